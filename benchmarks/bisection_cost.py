"""Expected training cost of the frontier's depth search: cost-weighted bisection
(`depthlab.depth_frontier.split_point`) against midpoint bisection, over every boundary between a
trainable 96 and a failing 192, under the search's own cost model (a trainable depth: one trial
stopping half-way through 3 epochs; a failing depth: every lr for all 3 epochs; both times the
depth). A model, not a timing: it needs no data and runs in a second.

    python benchmarks/bisection_cost.py
"""

from depthlab.depth_frontier.protocol import DEFAULT_LRS, FrontierConfig
from depthlab.depth_frontier.results import DepthResult
from depthlab.depth_frontier.search import failure_cost_ratio, search_depths


def search_cost(boundary: int, n_lrs: int, fail_over_ok: float | None) -> tuple[float, int, int]:
    spent, probes = 0.0, 0

    def evaluate(depth: int, start_lr):
        nonlocal spent, probes
        ok = depth <= boundary
        spent += depth * (1.5 if ok else 3.0 * n_lrs)
        probes += 1
        return DepthResult(depth, ok, 0.1 if ok else None, None, float(ok), None)

    found = search_depths(300, evaluate, fail_over_ok)
    return spent, probes, max(d for d, r in found.items() if r.trainable)


def main() -> None:
    print("lrs  ratio  weighted/midpoint cost  probes weighted  probes midpoint")
    for lrs in ((0.1,), (0.01, 0.1, 1.0), DEFAULT_LRS):
        ratio = failure_cost_ratio(FrontierConfig(lrs=lrs))
        boundaries = range(96, 192, 3)
        weighted = [search_cost(b, len(lrs), ratio) for b in boundaries]
        midpoint = [search_cost(b, len(lrs), None) for b in boundaries]
        assert [w[2] for w in weighted] == [m[2] for m in midpoint] == list(boundaries)  # the same answers
        print(
            f"{len(lrs):>3}  {ratio:>5g}  {sum(w[0] for w in weighted) / sum(m[0] for m in midpoint):>22.3f}"
            f"  {sum(w[1] for w in weighted) / len(weighted):>15.2f}  {sum(m[1] for m in midpoint) / len(midpoint):>15.2f}"
        )


if __name__ == "__main__":
    main()
