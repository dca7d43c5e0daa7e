"""What runs and tables become for readers: Figure 1 and group tables, the HTML run report,
Table 1 over seeds, and the one QuPath class scheme of GeoJSON exports.
"""
