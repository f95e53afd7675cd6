"""The mechanism and quality-evaluation registries: JSON files in configs/registries/.

`mechanisms.json`: `{"schema": 1, "mechanisms": {"<mechanism>": {"description": .., "lossy": bool,
"variants": {"<variant>": {"description": .., "lossy": bool?}}}}}`; a variant's `lossy` overrides
its mechanism's. `quality_evals.json`: `{"schema": 1, "quality_evals": {"<eval>": {"description": ..}}}`.
A registry that cannot be read is not an exception: `Registry.errors` says which file and why, and
the mechanism gate fails every arm with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runners.run.paths import CONFIGS_DIR

DEFAULT_REGISTRY_DIR = CONFIGS_DIR / "registries"
MECHANISMS_FILE = "mechanisms.json"
QUALITY_EVALS_FILE = "quality_evals.json"


class VariantEntry(BaseModel):
    """One registered variant of a mechanism."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    lossy: bool | None = None


class MechanismEntry(BaseModel):
    """One registered mechanism and its variants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    lossy: bool = False
    variants: dict[str, VariantEntry] = Field(min_length=1)

    def is_lossy(self, variant: str) -> bool:
        """Whether `variant` changes the model's outputs (its own flag, else the mechanism's)."""
        entry = self.variants.get(variant)
        return self.lossy if entry is None or entry.lossy is None else entry.lossy


class MechanismsFile(BaseModel):
    """mechanisms.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: int = Field(alias="schema")
    mechanisms: dict[str, MechanismEntry]


class QualityEvalEntry(BaseModel):
    """One registered quality evaluation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""


class QualityEvalsFile(BaseModel):
    """quality_evals.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: int = Field(alias="schema")
    quality_evals: dict[str, QualityEvalEntry]


@dataclass(frozen=True)
class Registry:
    """Both registries as loaded; `errors` is non-empty when either failed to load."""

    mechanisms: dict[str, MechanismEntry]
    quality_evals: dict[str, QualityEvalEntry]
    errors: tuple[str, ...] = ()
    directory: Path | None = None


def _load(path: Path, model: type[BaseModel]) -> tuple[BaseModel | None, str | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"{path}: missing"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path}: cannot be read: {exc}"
    try:
        return model.model_validate_json(text), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        return None, f"{path}: {problems}"


def load_registry(directory: Path | None = None) -> Registry:
    """Load both registries from `directory` (default configs/registries); never raises."""
    directory = directory or DEFAULT_REGISTRY_DIR
    mech, mech_error = _load(directory / MECHANISMS_FILE, MechanismsFile)
    evals, evals_error = _load(directory / QUALITY_EVALS_FILE, QualityEvalsFile)
    return Registry(
        mechanisms=dict(mech.mechanisms) if isinstance(mech, MechanismsFile) else {},
        quality_evals=dict(evals.quality_evals) if isinstance(evals, QualityEvalsFile) else {},
        errors=tuple(e for e in (mech_error, evals_error) if e),
        directory=directory,
    )
