"""runix data preparation: what a run's tokens are made from, shared by the lock and the runtime.

`runix lock` (compiler.resolve_inputs, which must never import jax) and the
trainer (runtime.data_source) both call this package, so a corpus, a
tokenizer and a token shard are prepared one way, by one piece of code,
whoever asks first. Nothing here imports jax or grain; heavy imports (tfds,
tokenizers, pyarrow) happen inside the functions that need them.

One job per module, imported by name (this file imports nothing):
  corpora          prepare_corpus, prepare_default_corpora, read_documents (built-in corpora as TFDS array_record)
  builtin_corpora  what each builtin:// corpus is cut from; debian_packages: the unpacked .debs it reads
  corpus_builder   the TFDS builder, run in its own process (byte-identical array_record)
  manifest         a prepared corpus's manifest (sha256 of every file)
  tokenizer        train_tokenizer, TokenizerArtifact, load_tokenizer_artifact
  shards           build_shard, write_shard, open_shard, TokenShard (tokens once, memory-mapped)
  external         fsspec paths and tfds:// datasets: check against the lock, tokenize into a shard
  store_shards     a shard as a store derivation: downloaded when published, else built once and published
  digests          sha256 of bytes, files, trees and canonical JSON; atomic_dir: build beside, rename into place
See README.md in this folder. How a run's batches are cut from the shards is runtime.data.
"""
