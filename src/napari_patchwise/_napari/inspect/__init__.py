"""The tabs under the sliders: Figure-1 histograms and the list of errors, and its export."""
