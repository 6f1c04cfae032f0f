"""The profile grid of the config (`profile:` in config/schema.yaml) as a list of cells.

Each study names models, window lengths and option sets; it expands into one cell per
(model, option set, memory policy, max_len), each a Snakemake job writing
results/profile/{device}/{policy}/{model}/{variant}/L{max_len}/B{batch}.json
(recbench/cost/measure.py measures it). The `recompute` policy is added only for models that
have activation recomputation; option sets apply to the models that have those options, as in
the experiment groups (recbench/plan/groups.py).

A study may also name the authors' code, `reference-<model>` (recbench/external/authors_code.py): it is
measured in the same cells as ours, with the reference config's options, under the `stored`
policy only (the reference keeps every activation) and with no option sets.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from models import model_class
from recbench.external.catalogue import MODELS as REFERENCE_MODELS
from recbench.external.catalogue import PREFIX as REFERENCE_PREFIX
from recbench.plan.groups import ConfigError, check_model_options, model_defaults, model_fields
from recbench.plan.variants import variant_name
from recbench.runtime import device_name

POLICIES = ("stored", "recompute")


def supports_recompute(model_name: str) -> bool:
    """Whether the model has activation recomputation (a `recompute` option)."""
    if model_name.startswith(REFERENCE_PREFIX):   # the authors' code keeps every activation
        return False
    return "recompute" in {f.name for f in dataclasses.fields(model_class(model_name).Config)}


@dataclass(frozen=True)
class ProfileCell:
    device: str
    policy: str
    model: str
    variant: str
    max_len: int
    batch_size: int
    overrides: dict = field(compare=False, hash=False)

    @property
    def path(self) -> str:
        return (f"results/profile/{self.device}/{self.policy}/{self.model}/{self.variant}/"
                f"L{self.max_len}/B{self.batch_size}.json")


def is_reference(model: str) -> bool:
    return model.startswith(REFERENCE_PREFIX)


def check_profiled_model(model: str, where: str) -> None:
    """A registered model, or the authors' code of one that runs without CUDA."""
    if not is_reference(model):
        return check_model_options(model, {}, where)
    if model.removeprefix(REFERENCE_PREFIX) not in REFERENCE_MODELS:
        raise ConfigError(f"{where}: unknown reference model {model!r}; the authors' code runs "
                          f"here for {[REFERENCE_PREFIX + m for m in REFERENCE_MODELS]} (the "
                          f"Mamba family needs CUDA kernels)")


def _options(model: str) -> set:
    """The option names a model takes (none for the authors' code)."""
    return set() if is_reference(model) else model_fields(model)


def expand_profile(config: dict) -> dict[str, list[ProfileCell]]:
    """{study: [ProfileCell, ...]} for the validated config; a bad model or option names the
    study."""
    profile = config["profile"]
    device = device_name(profile["device"])
    learned = [m for m in config["models"] if model_class(m).learned]
    chosen = profile["run_studies"]
    if chosen is None:
        chosen = list(profile["studies"])
    unknown = [s for s in chosen if s not in profile["studies"]]
    if unknown:
        raise ConfigError(f"config profile.run_studies: unknown stud(y/ies) {unknown}; defined "
                          f"in profile.studies: {sorted(profile['studies'])}")
    studies = {}
    for study in chosen:
        spec = profile["studies"][study]
        where = f"config profile.studies.{study}"
        models = spec.get("models", learned)
        for model in models:
            check_profiled_model(model, f"{where}.models")
        overrides = spec.get("overrides", [{}])
        for over in overrides:
            if not any(set(over) <= _options(m) for m in models):
                raise ConfigError(f"{where}.overrides: no model of {models} has all of the "
                                  f"options {sorted(over)}")
        cells = []
        for model, over, policy, max_len in itertools.product(
                models, overrides, profile["policies"], spec["max_lens"]):
            if not set(over) <= _options(model):
                continue
            if policy == "recompute" and not supports_recompute(model):
                continue
            if not is_reference(model):
                check_model_options(model, over, f"{where}.overrides")
            # the policy is its own path level, so `recompute` never names a variant
            shown = {k: v for k, v in over.items() if k != "recompute"}
            variant = "default" if is_reference(model) else variant_name(
                shown, model_defaults(model))
            cell = ProfileCell(device, policy, model, variant, int(max_len),
                               int(spec.get("batch_size", profile["batch_size"])), shown)
            if cell not in cells:
                cells.append(cell)
        studies[study] = cells
    return studies

