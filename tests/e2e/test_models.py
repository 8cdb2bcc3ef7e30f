"""The model zoo: reference-compatible SK units, paper SKNets, timm models, user modules."""
import json

import pytest
import torch

from skdeploy.commands.export import parse_input_shape, parse_kwargs
from skdeploy.errors import UsageError
from skdeploy.models import REGISTRY, load_model
from skdeploy.models.flops import count_macs
from skdeploy.models.sk import SKConv, sknet50, sknet101
from tests.support.helpers import randomize_bn, run_cli


@pytest.mark.parametrize("in_ch,out_ch,stride,M,r,L", [
    (64, 64, 1, 2, 16, 32),
    (64, 64, 2, 2, 16, 32),
    (96, 96, 1, 3, 8, 16),
    (128, 64, 2, 3, 4, 32),
    (32, 64, 1, 4, 16, 8),
])
def test_sk_unit_loads_reference_state_dict_and_matches(article_sknet, in_ch, out_ch, stride, M, r, L):
    torch.manual_seed(0)
    reference = randomize_bn(article_sknet.SKNet(in_ch, out_ch, stride=stride, M=M, r=r, L=L), seed=1)
    ours = SKConv(in_ch, out_ch, stride=stride, M=M, r=r, L=L).eval()
    result = ours.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(3, in_ch, 12, 12)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert expected.abs().max() > 0.1  # the branches really carry signal


@pytest.mark.parametrize("M", [1, 2, 3])
def test_sk_unit_parameter_names_are_the_articles(M):
    from tests.support.article_sknet import seed_state_dict_keys

    assert sorted(SKConv(64, 64, M=M).state_dict()) == sorted(seed_state_dict_keys(M))


def test_sk_unit_rejects_channels_grouped_convs_cannot_take():
    with pytest.raises(UsageError, match="divisible by 32"):
        SKConv(48, 48)


@pytest.mark.parametrize("factory,paper_millions,paper_gflops", [(sknet50, 27.5, 4.47), (sknet101, 48.9, 8.46)])
def test_paper_networks_match_published_size(factory, paper_millions, paper_gflops):
    model = factory()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - paper_millions) / paper_millions < 0.02
    gflops = count_macs(model, (3, 224, 224)) / 1e9
    assert abs(gflops - paper_gflops) / paper_gflops < 0.02


def test_demo_model_is_about_one_million_parameters():
    config = REGISTRY["sknet-fmnist"]
    model = load_model(arch="sknet-fmnist", pretrained=False).module
    params = sum(p.numel() for p in model.parameters())
    assert 0.8e6 < params < 1.2e6
    assert model(torch.zeros(2, *config.input_size)).shape == (2, 10)


@pytest.mark.parametrize("name", ["skresnet18", "skresnet34", "skresnext50_32x4d"])
def test_timm_models_resolve_with_their_config(name):
    loaded = load_model(spec=f"timm:{name}")
    assert loaded.config.input_size == (3, 224, 224)
    assert loaded.config.preprocessing.crop == (224, 224)
    assert loaded.module(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_unknown_timm_model_is_a_usage_error():
    with pytest.raises(UsageError, match="timm has no model"):
        load_model(spec="timm:not_a_model")


def test_user_module_from_file_with_kwargs(tmp_path):
    source = tmp_path / "my_net.py"
    source.write_text(
        "import torch\n"
        "from skdeploy.models.sk import SKConv\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, width):\n"
        "        super().__init__()\n"
        "        self.stem = torch.nn.Conv2d(3, width, 3, padding=1)\n"
        "        self.sk = SKConv(width, width)\n"
        "        self.head = torch.nn.Linear(width, 5)\n"
        "    def forward(self, x):\n"
        "        return self.head(self.sk(self.stem(x)).mean((2, 3)))\n"
        "def build(width=32):\n"
        "    return Net(width)\n")
    loaded = load_model(spec=f"{source}:build", model_kwargs={"width": 64}, input_shape=(3, 16, 16))
    assert loaded.module.sk.out_channels == 64
    assert loaded.config.input_size == (3, 16, 16)
    assert loaded.config.preprocessing.crop == (16, 16)


def test_user_module_from_package_path():
    loaded = load_model(spec="skdeploy.models.sk:sknet_fmnist", input_shape=(1, 32, 32))
    assert loaded.module.fc.out_features == 10


def test_user_module_whose_grouped_convs_cannot_take_the_channels(article_sknet):
    path = article_sknet.__file__
    with pytest.raises(UsageError, match="cannot be built"):
        load_model(spec=f"{path}:SKNet", model_kwargs={"in_channels": 48, "out_channels": 48})


@pytest.mark.parametrize("spec,message", [
    ("no_colon_here", "must be"),
    ("missing_file.py:build", "does not exist"),
    ("not a module:build", "not a Python module path"),
    ("skdeploy.models.sk:no_such_factory", "no callable"),
    ("no_such_package_xyz.mod:build", "cannot import"),
])
def test_malformed_model_specs(spec, message):
    with pytest.raises(UsageError, match=message):
        load_model(spec=spec)


def test_kwargs_and_shape_parsing():
    assert parse_kwargs('{"num_classes": 10}') == {"num_classes": 10}
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_kwargs("{num_classes: 10}")
    with pytest.raises(UsageError, match="JSON object"):
        parse_kwargs("[1, 2]")
    assert parse_input_shape("3x224x224") == (3, 224, 224)
    with pytest.raises(UsageError):
        parse_input_shape("224x224")
    with pytest.raises(UsageError, match="does not accept"):
        load_model(arch="sknet26", model_kwargs={"bogus": 1})


def test_models_command_lists_every_name():
    result = run_cli("models", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"sknet-fmnist", "sknet26", "sknet50", "sknet101", "timm:skresnet18", "timm:skresnet34",
            "timm:skresnext50_32x4d"} <= set(rows)
    assert rows["sknet-fmnist"]["weights"] is True
    assert rows["sknet-fmnist"]["input_shape"] == [1, 32, 32]
    assert abs(rows["sknet50"]["params"] - 27.5e6) / 27.5e6 < 0.02


def test_models_table_prints_extras_in_brackets_as_written():
    """Rich reads `[timm]` as a style tag and drops it unless the cell is escaped."""
    result = run_cli("models")
    assert result.exit_code == 0
    assert "needs skdeploy[timm]" in result.stdout
