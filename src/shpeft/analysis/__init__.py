"""Analysis of finished runs: statistics, tables, figures, sweep tables and the report."""
