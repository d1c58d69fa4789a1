"""runix batches: how a run's step-indexed batches are cut from its token shards.

The shards themselves (corpora, tokenizer, tokenization) come from the
jax-free `dataprep` package. Import what you need from the modules (nothing
heavy is imported here):
  step_batches  MixtureSource, make_batch_function, BatchFunction.batch_at (batch = f(step))
  mixture       BlockExactMixture: how many sequences of each source fill each step
  windows       which window of a source's stream the k-th sequence reads
  permutation   keyed bijections of [0, n)
  pipeline      make_batch_dataset (grain front end)
See README.md in this folder.
"""
