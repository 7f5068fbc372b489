"""A datatrove filter written for datatrove, used as it is by examples/datatrove.yaml."""

from datatrove.pipeline.filters.base_filter import BaseFilter


class MinLinesFilter(BaseFilter):
    """Drops documents with fewer than `min_lines` lines, as `too_few_lines`."""

    name = "📏 Min lines"

    def __init__(self, min_lines: int = 10, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.min_lines = min_lines

    def filter(self, doc) -> bool | tuple[bool, str]:
        if doc.text.count("\n") + 1 < self.min_lines:
            return False, "too_few_lines"
        return True
