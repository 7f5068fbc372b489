"""smelt_data: read smelt's token shards in training jobs.

    from smelt_data import TokenShardDataset
    ds = TokenShardDataset("smelt-data/datasets/news-tok", rank=rank, world_size=world, seed=0,
                           seq_len=1024, expected_tokenizer="tiktoken:cl100k_base")
    loader = ShardLoader(ds, batch_size=8, num_workers=1, device="cuda", pin_memory=True)
    # or: torch.utils.data.DataLoader(TokenShardDataset(..., batch_size=8), batch_size=None, num_workers=1)

and the decorators of smelt's `python` transform (worker.py is its Python end, embedded in smelt):

    import smelt_data

    @smelt_data.filter
    def long_enough(row):
        return len(row["text"]) > 500 or (False, "short")
"""

from .dataset import Chunk, TokenizerMismatch, TokenShardDataset, find_manifest, samples_per_epoch
from .loader import LoaderWorkerError, ShardLoader
from .worker import batch, filter, map  # noqa: A004 (the modes' names; not in __all__, so `import *` keeps the builtins)

__all__ = ["Chunk", "LoaderWorkerError", "ShardLoader", "TokenShardDataset", "TokenizerMismatch", "find_manifest",
           "samples_per_epoch"]
__version__ = "0.1.0"
