"""The hardware catalog: every chip loads with its published numbers, presets load, and every
bad input is one ConfigError that names the fix."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from autoplan.cost_models import catalog
from autoplan.errors import ConfigError
from autoplan.types import Accelerator, Cluster

CONTRACT_NAMES = (
    "a100-sxm-40gb", "a100-sxm-80gb", "a800-sxm-80gb", "h100-sxm-80gb", "h800-sxm-80gb",
    "h200-sxm-141gb", "h20", "b200", "gb200", "mi300x", "tpu-v4", "tpu-v5e", "tpu-v5p",
    "ascend-910b", "kunlun-p800",
)
PRESETS = ("dgx-h100-superpod", "gb200-nvl72", "kunlun-p800-xpu")


# --- accelerators ----------------------------------------------------------------------------


def test_catalog_lists_every_contract_accelerator():
    assert catalog.accelerator_names() == list(CONTRACT_NAMES)


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_every_accelerator_loads_with_sources(name):
    chip = catalog.accelerator(name)
    assert isinstance(chip, Accelerator) and chip.name == name
    assert chip.peak("bf16") > 0 and chip.sources
    assert set(chip.estimated) <= {f.name for f in fields(Accelerator)}
    assert chip.scale_up_domain >= chip.devices_per_node


@pytest.mark.parametrize(
    ("name", "bf16"),
    [
        ("h100-sxm-80gb", 989.4e12),  # Hopper whitepaper, dense (1979 is the 2:4-sparse figure)
        ("h200-sxm-141gb", 989.4e12),  # same GH100 compute
        ("a100-sxm-80gb", 312e12),
        ("a800-sxm-80gb", 312e12),
        ("b200", 2.25e15),  # dgxc-benchmarking peak table
        ("gb200", 2.45e15),
        ("h20", 148e12),
        ("mi300x", 1307.4e12),
        ("tpu-v4", 275e12),
        ("tpu-v5e", 197e12),
        ("tpu-v5p", 459e12),
    ],
)
def test_dense_bf16_peaks_match_vendor_figures(name, bf16):
    assert catalog.accelerator(name).peak("bf16") == bf16


def test_published_link_and_memory_figures():
    assert catalog.accelerator("gb200").scale_up_domain == 72
    assert catalog.accelerator("gb200").devices_per_node == 4
    assert catalog.accelerator("a100-sxm-80gb").nic_bytes_per_s == 25e9  # HDR 200 Gb/s
    assert catalog.accelerator("h100-sxm-80gb").scale_up_bytes_per_s == 450e9  # 900 GB/s bidirectional
    assert catalog.accelerator("h800-sxm-80gb").scale_up_bytes_per_s == 200e9  # 400 GB/s bidirectional
    assert catalog.accelerator("mi300x").scale_up_bytes_per_s == 7 * 64e9  # 7 xGMI links x 64 GB/s
    assert catalog.accelerator("tpu-v4").hbm_bytes == 32 * 2**30  # Google states GiB
    assert catalog.accelerator("tpu-v5p").nic_bytes_per_s == 50e9 / 8  # 50 Gb/s DCN per chip


def test_estimates_are_marked_where_no_vendor_sheet_exists():
    assert "peak_flops_per_s" in catalog.accelerator("kunlun-p800").estimated
    assert "peak_flops_per_s" in catalog.accelerator("ascend-910b").estimated
    assert catalog.accelerator("h100-sxm-80gb").estimated == ()


@pytest.mark.parametrize(
    ("alias", "name"),
    [("h100", "h100-sxm-80gb"), ("H100-80GB", "h100-sxm-80gb"), ("a100", "a100-sxm-80gb"),
     (" Tpu-V5p ", "tpu-v5p"), ("MI300X", "mi300x")],
)
def test_names_are_case_insensitive_with_aliases(alias, name):
    assert catalog.accelerator(alias).name == name


def test_aliases_do_not_shadow_cluster_presets():
    data = json.loads((Path(catalog.__file__).parent / "accelerators.json").read_text())
    aliases = [a.lower() for e in data["accelerators"] for a in (e["name"], *e.get("aliases", ()))]
    assert len(aliases) == len(set(aliases))
    assert not set(aliases) & set(catalog.cluster_names())


def test_unknown_accelerator_lists_names_and_command():
    with pytest.raises(ConfigError, match=r"unknown accelerator 'h900'.*h100-sxm-80gb.*autoplan catalog"):
        catalog.accelerator("h900")


# --- default clusters ------------------------------------------------------------------------


def test_bare_accelerator_is_one_node_on_the_default_fabric():
    cluster = catalog.load_cluster("h100")
    assert isinstance(cluster, Cluster) and cluster.devices == 8
    assert [t.name for t in cluster.tiers] == ["scale-up", "leaf", "spine"]
    up, leaf, spine = cluster.tiers
    assert (up.span, up.bytes_per_s) == (8, 450e9)
    assert (leaf.span, leaf.bytes_per_s) == (256, 50e9)  # 32 nodes x 8 GPUs, one NDR rail per GPU
    assert (spine.span, spine.oversubscription) == (256, 1.0)
    assert up.latency_s < leaf.latency_s < spine.latency_s


def test_devices_override_widens_the_spine():
    cluster = catalog.load_cluster("a100-sxm-80gb", devices=1024)
    assert cluster.devices == 1024 and cluster.tiers[-1].span == 1024
    assert cluster.tiers[1].bytes_per_s == 25e9


def test_partial_node_is_allowed():
    assert catalog.load_cluster("h100", devices=2).devices == 2


def test_gb200_default_leaf_is_eight_racks():
    up, leaf, _ = catalog.load_cluster("gb200", devices=144).tiers
    assert (up.span, leaf.span) == (72, 576)


def test_tpu_default_fabric_is_ici_then_dcn():
    cluster = catalog.load_cluster("tpu-v5p", devices=256)
    assert [t.name for t in cluster.tiers] == ["ici", "dcn"]
    assert cluster.tiers[0].bytes_per_s == 600e9  # 1200 GB/s bidirectional per chip


# --- presets and files -----------------------------------------------------------------------


def test_cluster_presets_are_listed():
    assert catalog.cluster_names() == sorted(PRESETS)


def test_dgx_h100_superpod_preset():
    cluster = catalog.load_cluster("dgx-h100-superpod")
    assert cluster.devices == 32 * 32 * 8
    assert [t.span for t in cluster.tiers] == [8, 256, 8192]
    assert cluster.accelerator.name == "h100-sxm-80gb"


def test_gb200_preset_has_rack_scale_nvlink():
    cluster = catalog.load_cluster("GB200-NVL72")
    assert cluster.tiers[0].span == 72 and cluster.devices % 72 == 0
    assert cluster.devices_per_node == 4


def test_kunlun_preset_spine_is_oversubscribed():
    cluster = catalog.load_cluster("kunlun-p800-xpu")
    assert cluster.tiers[-1].oversubscription == 2.0


def test_preset_devices_override():
    assert catalog.load_cluster("dgx-h100-superpod", devices=512).devices == 512


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_yaml_file_with_inline_accelerator_and_overrides(tmp_path):
    spec = _write(tmp_path, """
accelerator:
  name: my-chip
  vendor: acme
  generation: hopper
  peak_flops_per_s: {bf16: 500e12}
  hbm_bytes: 64e9
  hbm_bytes_per_s: 2e12
  scale_up_bytes_per_s: 100e9
  scale_up_domain: 4
  devices_per_node: 4
  nic_bytes_per_s: 25e9
devices: 16
nic_bytes_per_s: 50e9
""")
    cluster = catalog.load_cluster(spec)
    assert cluster.name == "c" and cluster.devices == 16
    assert cluster.accelerator.nic_bytes_per_s == 50e9
    assert [t.span for t in cluster.tiers] == [4, 128, 128]


def test_json_file(tmp_path):
    body = {"accelerator": "b200", "devices": 16,
            "fabric": [{"name": "nvlink", "span": 8, "bytes_per_s": 900e9, "latency_s": 3e-6},
                       {"name": "ib", "span": 16, "bytes_per_s": 50e9, "latency_s": 5e-6}]}
    cluster = catalog.load_cluster(_write(tmp_path, json.dumps(body), "x.json"))
    assert [t.name for t in cluster.tiers] == ["nvlink", "ib"]


# --- errors ----------------------------------------------------------------------------------

_TIERS = "accelerator: h100\ndevices: 8\nfabric:\n  - {name: a, span: 8, bytes_per_s: 1e9, latency_s: 1e-6}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accelerator: h100\ndevices: [1\n", r"not valid YAML.*line \d+ column \d+"),
        ("- just\n- a list\n", r"must be a mapping"),
        ("devices: 8\n", r"missing field 'accelerator'"),
        ("accelerator: h100\n", r"missing field 'devices'"),
        ("accelerator: h100\ndevices: 8\ncolour: red\n", r"unknown field 'colour'"),
        ("accelerator: h900\ndevices: 8\n", r"unknown accelerator 'h900'"),
        ("accelerator: h100\ndevices: 0\n", r"devices=0 must be a whole number >= 1"),
        ("accelerator: h100\ndevices: lots\n", r"devices='lots' is not a number"),
        ("accelerator: h100\ndevices: 12\n", r"devices=12 is not a whole number of .* nodes.*use 8 or 16"),
        ("accelerator: {name: x}\ndevices: 8\n", r"accelerator: missing field 'vendor'"),
        ("accelerator: h100\ndevices: 8\nfabric: []\n", r"non-empty list of tiers"),
        ("accelerator: h100\ndevices: 8\nfabric:\n  - {name: a, span: 8, bytes_per_s: 1e9}\n",
         r"fabric\[0\]: missing field 'latency_s'"),
        (_TIERS + "  - {name: b, span: 4, bytes_per_s: 1e9, latency_s: 1e-6}\n",
         r"must widen outward.*\[8, 4\]"),
        (_TIERS + "  - {name: a, span: 16, bytes_per_s: 1e9, latency_s: 1e-6}\n",
         r"names repeat"),
        ("accelerator: h100\ndevices: 8\nfabric:\n"
         "  - {name: a, span: 8, bytes_per_s: 1e9, latency_s: 1e-6, oversubscription: 0.5}\n",
         r"oversubscription=0.5 must be >= 1"),
    ],
)
def test_bad_cluster_files_raise_config_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        catalog.load_cluster(_write(tmp_path, text))


def test_malformed_json_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid JSON.*line 1"):
        catalog.load_cluster(_write(tmp_path, "{devices: 8", "bad.json"))


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read cluster file .*missing\.yaml.*check the path"):
        catalog.load_cluster(str(tmp_path / "missing.yaml"))


def test_unknown_cluster_spec_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown cluster 'h900-pod'.*h100-sxm-80gb.*dgx-h100-superpod"):
        catalog.load_cluster("h900-pod")


@pytest.mark.parametrize("devices", [0, -8])
def test_devices_below_one(devices):
    with pytest.raises(ConfigError, match=rf"devices={devices} must be"):
        catalog.load_cluster("h100", devices=devices)


def test_devices_not_whole_nodes_suggests_nearest():
    with pytest.raises(ConfigError, match=r"devices=70 .*4 devices per node.*use 68 or 72"):
        catalog.load_cluster("gb200", devices=70)
