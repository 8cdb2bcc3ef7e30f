"""Printing what the graph passes did, for export and optimize."""
from .. import ui
from ..graph import as_report


def show_passes(reports) -> None:
    """Print what each pass did and the node counts by op type before the first and after the last."""
    if not reports:
        return
    reports = [as_report(report) for report in reports]
    for report in reports:
        for line in report.describe():
            ui.out.print(line)
    before, after = reports[0].node_counts_before, reports[-1].node_counts_after
    rows = [(op, before.get(op, 0), after.get(op, 0)) for op in sorted(set(before) | set(after))]
    rows.append(("total", sum(before.values()), sum(after.values())))
    ui.table("nodes by op type", ["op", "before passes", "after passes"], rows)

