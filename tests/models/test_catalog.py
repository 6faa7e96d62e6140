"""The families and presets are data (`depthlab.models.catalog`, specs in `depthlab.models.specs`)
that import without torch, and the registry is built from that one table (issue 32)."""

import subprocess
import sys

import pytest

from depthlab.models import catalog, registry


def test_the_catalog_and_the_specs_import_without_torch():
    probe = (
        "import sys; import depthlab.models.catalog as c, depthlab.models.specs; "
        "print('torch' in sys.modules, len(c.PRESETS), len(c.FAMILIES))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", str(len(catalog.PRESETS)), str(len(catalog.FAMILIES))]


def test_the_registry_is_built_from_the_catalog():
    assert registry.PRESETS is catalog.PRESETS  # one table: a preset registered is listed too
    for name, info in catalog.FAMILIES.items():
        family = registry.FAMILIES[name]
        assert (family.spec_cls, family.datasets, family.description, family.depth_unit) == (
            info.spec_cls,
            info.datasets,
            info.description,
            info.depth_unit,
        )
    for name in catalog.FAMILIES:  # every family is a preset of its own name
        assert catalog.PRESETS[name].family == name and catalog.PRESETS[name].values == {}


@pytest.mark.parametrize("name", list(catalog.FAMILIES))
def test_each_catalog_builder_builds_its_family(name):
    from depthlab.data import DATASETS
    from depthlab.models import create_model

    info = catalog.FAMILIES[name]
    net = create_model(name, DATASETS[info.datasets[0]].input_shape, 10)
    assert type(net).__name__ == info.builder.partition(":")[2]


def test_every_preset_names_a_family_and_only_its_fields():
    import dataclasses

    for preset in catalog.PRESETS.values():
        fields = {f.name for f in dataclasses.fields(catalog.FAMILIES[preset.family].spec_cls)}
        assert set(preset.values) <= fields, preset.name
