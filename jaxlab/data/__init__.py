"""Data layer: the tokenizer protocol and chat templates, byte tokenizer, text corpora, tfds array_record preparation, grain packing,
chat (SFT) and preference-pair batches.

Flow: ``corpus`` (documents -> chunks, train/validation by hash) -> ``tfds_text`` (chunks ->
array_record files, random access) -> ``pipeline`` (records -> tokens -> packed [B, T] batches).
``tfds_text`` (and tensorflow_datasets) is imported only when a corpus is prepared.
"""

from jaxlab.data.chat import (
    encode_example,
    encode_messages,
    encode_pair,
    encode_prompt,
    encode_record,
    pad_rows,
    preference_batch,
    preference_dataset,
    render_messages,
    sft_dataset,
    verification_record,
)
from jaxlab.data.corpus import (
    DataError,
    chunk_document,
    default_documents,
    list_files,
    read_documents,
    split_chunks,
)
from jaxlab.data.pipeline import (
    BATCH_KEYS,
    DataConfig,
    JsonStateIterDataset,
    batches_per_epoch,
    lm_dataset,
    open_split,
    packed_lm_dataset,
    resolve_data_dir,
    tokenize_record,
)
from jaxlab.data.tokenizer import (
    BOS_ID,
    BYTES,
    CHATML,
    EOS_ID,
    PAD_ID,
    PLAIN,
    VOCAB_SIZE,
    ByteTokenizer,
    ChatTemplate,
    Tokenizer,
    template_from_jinja,
)


def prepare(*args, **kwargs):
    """See :func:`jaxlab.data.tfds_text.prepare` (imported lazily: it loads tensorflow_datasets)."""
    from jaxlab.data.tfds_text import prepare as _prepare

    return _prepare(*args, **kwargs)


__all__ = [
    "BATCH_KEYS", "BOS_ID", "EOS_ID", "PAD_ID", "VOCAB_SIZE", "ByteTokenizer", "DataConfig",
    "DataError", "JsonStateIterDataset", "batches_per_epoch", "chunk_document",
    "default_documents", "list_files", "lm_dataset", "open_split", "packed_lm_dataset",
    "prepare", "read_documents", "resolve_data_dir", "split_chunks", "tokenize_record",
    "encode_example", "encode_messages", "encode_pair", "encode_prompt", "encode_record",
    "pad_rows", "preference_batch", "preference_dataset", "sft_dataset", "verification_record",
    "BYTES", "CHATML", "PLAIN", "ChatTemplate", "Tokenizer", "render_messages", "template_from_jinja",
]
