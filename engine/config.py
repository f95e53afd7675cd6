"""The engine's configuration file (`configs/engine-tiny.toml`) as validated models."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.config_file import load_toml_model


class ModelConfig(BaseModel):
    """Shape and seed of the tiny decoder-only transformer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "gb10-tiny"
    layers: int = Field(4, ge=1, le=64)
    hidden: int = Field(256, ge=16, le=8192)
    heads: int = Field(8, ge=1)
    kv_heads: int = Field(2, ge=1)
    ffn: int = Field(768, ge=16)
    max_model_len: int = Field(4096, ge=16, le=131072)
    seed: int = 1234
    rope_theta: float = Field(10000.0, gt=0)

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if (self.hidden // self.heads) % 2:
            raise ValueError("hidden / heads (the head size) must be even for rotary embeddings")
        return self

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.hidden // self.heads


class ServerConfig(BaseModel):
    """How the engine server schedules work."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_num_seqs: int = Field(32, ge=1, le=1024)
    threads: int = Field(1, ge=1, le=256)


class EngineConfig(BaseModel):
    """The whole engine config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelConfig = ModelConfig()
    server: ServerConfig = ServerConfig()


def load_engine_config(path: Path) -> EngineConfig:
    """Read an engine config TOML file; raises ConfigFileError naming file, line and field."""
    return load_toml_model(path, EngineConfig)
