"""``patchwise view``: bad input is one line on stderr and exit 2, before napari starts."""

from __future__ import annotations

import pandas as pd

from napari_patchwise.cli.main import main


def test_view_rejects_a_table_of_another_slide(tmp_path, capsys):
    image = tmp_path / "slide.png"
    image.write_bytes(b"")  # never read: the table is checked first
    table = pd.DataFrame({c: [0] for c in ("row", "col", "y", "x", "height", "width")})
    for c in ("n_pixels", "n_tumor", "n_healthy", "n_tissue", "label"):
        table[c] = 0
    for c in ("tumor_ratio", "tissue_ratio", "tumor_tissue_ratio"):
        table[c] = 0.0
    table["slide"] = "another"
    table.to_csv(tmp_path / "t.csv", index=False)
    assert main(["view", str(image), "--table", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "t.csv: table is for slide another, not 'slide'" in err[0]


def test_view_reports_a_missing_file(tmp_path, capsys):
    assert main(["view", str(tmp_path / "nope.ome.tif")]) == 2
    assert "nope.ome.tif: no such file" in capsys.readouterr().err
