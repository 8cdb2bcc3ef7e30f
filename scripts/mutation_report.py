"""Summarise `mutmut results --all true`: the score per module and overall, and the survivors that
docs/testing.md does not list as equivalent.

    python scripts/mutation_report.py mutants/results.txt docs/testing.md

Score = killed / (all mutants - listed equivalents); a timeout counts as killed (the mutant made a test
loop), "no tests" as not killed (no unit test runs that code). Exit 1 when the score is under the target.
"""
import re
import sys
from collections import Counter, defaultdict

TARGET = 0.85
KILLED = {"killed", "timeout"}


def read_results(path) -> dict:
    """mutant name -> status, from lines like '    skdeploy.compare.x_top_k__mutmut_3: survived'."""
    statuses = {}
    for line in open(path, encoding="utf-8"):
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            statuses[name] = status
    return statuses


def listed_equivalents(path) -> set:
    """Mutant names written in backticks in docs/testing.md's equivalent-mutant table."""
    return set(re.findall(r"`([\w.]+__mutmut_\d+)`", open(path, encoding="utf-8").read()))


def module_of(mutant: str) -> str:
    """'skdeploy.compare.x_top_k__mutmut_3' and 'skdeploy.calib.ranges.xǁTensorHistogramǁupdate__mutmut_1'
    both name their module before '.x_' / '.xǁ'."""
    return re.match(r"(.*?)\.x[_ǁ]", mutant).group(1)


def main(results_path, testing_doc):
    statuses = read_results(results_path)
    equivalent = listed_equivalents(testing_doc) & set(statuses)
    per_module = defaultdict(Counter)
    for name, status in statuses.items():
        per_module[module_of(name)]["equivalent" if name in equivalent else status] += 1
    print(f"{'module':42} {'mutants':>7} {'killed':>7} {'equiv':>6} {'survived':>8} {'no test':>7} {'score':>7}")
    killed_total = counted_total = 0
    for module, counts in sorted(per_module.items()):
        killed = sum(counts[s] for s in KILLED)
        counted = sum(counts.values()) - counts["equivalent"]
        killed_total, counted_total = killed_total + killed, counted_total + counted
        print(f"{module:42} {sum(counts.values()):7} {killed:7} {counts['equivalent']:6} {counts['survived']:8} "
              f"{counts['no tests']:7} {killed / max(counted, 1):7.1%}")
    score = killed_total / max(counted_total, 1)
    print(f"\nmutation score: {killed_total} of {counted_total} non-equivalent mutants killed = {score:.1%} "
          f"(target {TARGET:.0%}; {len(equivalent)} listed as equivalent in {testing_doc})")
    unexplained = sorted(n for n, s in statuses.items() if s not in KILLED and n not in equivalent)
    if unexplained:
        print(f"\n{len(unexplained)} mutants neither killed nor listed as equivalent:")
        for name in unexplained:
            print(f"  {name}: {statuses[name]}")
    return 0 if score >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
