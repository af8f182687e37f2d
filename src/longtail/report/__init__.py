"""The study's report: its headline findings (``findings``) and the self-contained page that
shows them with the galleries, the table of every reported item, the removal curve and the
diagnostics (``page``). Kedro-free: the reporting pipeline's node calls ``render``."""

from longtail.report.page import PageSize, StudyTables, class_names, is_table, render

__all__ = ["PageSize", "StudyTables", "class_names", "is_table", "render"]
