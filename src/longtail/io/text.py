"""Text files (the study's HTML report) written atomically, in UTF-8."""

from __future__ import annotations

from kedro_datasets.text import TextDataset as _KedroTextDataset

from longtail.io.atomic import atomic_path


class TextDataset(_KedroTextDataset):
    """kedro-datasets' TextDataset, read and written as UTF-8 whatever the locale, and a local
    save is atomic (temporary file, then rename): a page is complete on disk or absent."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._fs_open_args_load.setdefault("encoding", "utf-8")
        self._fs_open_args_save.setdefault("encoding", "utf-8")

    def save(self, data: str) -> None:
        if self._protocol != "file":
            super().save(data)
            return
        with atomic_path(self._get_save_path()) as temporary:
            temporary.write_text(data, encoding="utf-8")
        self._invalidate_cache()
