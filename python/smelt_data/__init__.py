"""smelt_data: read smelt's token shards in training jobs.

    from smelt_data import TokenShardDataset
    ds = TokenShardDataset("smelt-data/datasets/news-tok", rank=rank, world_size=world, seed=0,
                           seq_len=1024, expected_tokenizer="tiktoken:cl100k_base")
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=1)
"""

from .dataset import Chunk, TokenizerMismatch, TokenShardDataset, find_manifest, samples_per_epoch

__all__ = ["Chunk", "TokenShardDataset", "TokenizerMismatch", "find_manifest", "samples_per_epoch"]
__version__ = "0.1.0"
