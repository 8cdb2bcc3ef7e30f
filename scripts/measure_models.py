"""Print parameters and GFLOPs (multiply-accumulates, as the SKNet paper counts them) for every model.

    .venv/bin/python scripts/measure_models.py
"""
from skdeploy.models import REGISTRY, TIMM_MODELS, load_model
from skdeploy.models.flops import count_macs

PAPER = {"sknet50": (27.5, 4.47), "sknet101": (48.9, 8.46)}


def main():
    print("| model | input | params (M) | GFLOPs | paper params / GFLOPs |")
    print("|---|---|---|---|---|")
    names = list(REGISTRY) + [f"timm:{n}" for n in TIMM_MODELS]
    for name in names:
        loaded = load_model(arch=name, pretrained=False) if name in REGISTRY else load_model(spec=name)
        params = sum(p.numel() for p in loaded.module.parameters()) / 1e6
        gflops = count_macs(loaded.module, loaded.config.input_size) / 1e9
        paper = "{} / {}".format(*PAPER[name]) if name in PAPER else "-"
        shape = "x".join(map(str, loaded.config.input_size))
        print(f"| {name} | {shape} | {params:.2f} | {gflops:.3f} | {paper} |")


if __name__ == "__main__":
    main()
