"""Writers for what people look at: tables, plots, overlays, the HTML report."""
