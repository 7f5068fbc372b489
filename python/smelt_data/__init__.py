"""smelt_data: read smelt's token shards in training jobs.

    from smelt_data import TokenShardDataset
    ds = TokenShardDataset("smelt-data/datasets/news-tok", rank=rank, world_size=world, seed=0,
                           seq_len=1024, expected_tokenizer="tiktoken:cl100k_base")
    loader = ShardLoader(ds, batch_size=8, num_workers=1, device="cuda", pin_memory=True)
    # or: torch.utils.data.DataLoader(TokenShardDataset(..., batch_size=8), batch_size=None, num_workers=1)
"""

from .dataset import Chunk, TokenizerMismatch, TokenShardDataset, find_manifest, samples_per_epoch
from .loader import LoaderWorkerError, ShardLoader

__all__ = ["Chunk", "LoaderWorkerError", "ShardLoader", "TokenShardDataset", "TokenizerMismatch", "find_manifest",
           "samples_per_epoch"]
__version__ = "0.1.0"
