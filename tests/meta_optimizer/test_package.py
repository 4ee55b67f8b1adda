"""The Part II package: one name, one object — no chapter's star-exported name hides another's."""

import importlib

import icl_course.meta_optimizer as part

MODULES = ("_dai_metrics", "_lm_protocol", "dual_form", "toy_finetuning", "real_lm", "momentum", "critiques")


def test_no_exported_name_is_claimed_by_two_objects():
    owners: dict[str, object] = {}
    for name in MODULES:
        mod = importlib.import_module(f"icl_course.meta_optimizer.{name}")
        for n in mod.__all__:
            obj = getattr(mod, n)
            assert owners.setdefault(n, obj) is obj, f"{name}.{n} hides another module's {n}"
            assert getattr(part, n) is obj
