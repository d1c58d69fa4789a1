"""runix data: built-in corpora, tokenizer, token shards and the batches of a run.

Import what you need from the modules (nothing heavy is imported here):
  corpora    prepare_corpus, prepare_default_corpora, read_documents
  tokenizer  train_tokenizer, TokenizerArtifact, load_tokenizer_artifact
  shards     build_shard, open_shard, TokenShard
  batches    MixtureSource, make_batch_function, BatchFunction.batch_at
  pipeline   make_batch_dataset (grain front end)
See README.md in this folder.
"""
