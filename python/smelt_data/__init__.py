"""smelt_data: read smelt's token shards in training jobs.

    from smelt_data import TokenShardDataset
    ds = TokenShardDataset("smelt-data/datasets/news-tok", rank=rank, world_size=world, seed=0,
                           seq_len=1024, expected_tokenizer="tiktoken:cl100k_base")
    loader = ShardLoader(ds, batch_size=8, num_workers=1, device="cuda", pin_memory=True)
    # or: torch.utils.data.DataLoader(TokenShardDataset(..., batch_size=8), batch_size=None, num_workers=1)
    loader.log(step, loss=loss.item())   # the run's metrics, next to the version (ROOT/_training/<run id>/)

and the decorators of smelt's `python` transform (worker.py is its Python end, embedded in smelt):

    import smelt_data

    @smelt_data.filter
    def long_enough(row):
        return len(row["text"]) > 500 or (False, "short")

The loader classes are imported on first use (PEP 562): ``python -m smelt_data.trace`` and
smelt's embedded worker import only numpy and pyarrow, never torch.
"""

from .worker import batch, filter, map  # noqa: A004 (the modes' names; not in __all__, so `import *` keeps the builtins)

_LAZY = {
    "Chunk": "plan", "find_manifest": "plan",
    "TokenizerMismatch": "dataset", "TokenShardDataset": "dataset", "samples_per_epoch": "dataset",
    "LoaderWorkerError": "loader", "ShardLoader": "loader",
    "TrainingRun": "runs",
}

__all__ = ["Chunk", "LoaderWorkerError", "ShardLoader", "TokenShardDataset", "TokenizerMismatch", "TrainingRun",
           "find_manifest", "samples_per_epoch"]
__version__ = "0.1.0"


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'smelt_data' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
