"""Three-way (tensor) SIF: rows of three ids ``(a, b, c)``, a knowledge graph's ``(head,
relation, tail)`` or ``(user, item, context)`` with a rating.

* **Data** (``read_rows``, ``load``): files with three id columns and optionally a value
  (plain, or RecBole atomic files with three ``:token`` columns and ``rating:float``); given
  ``valid``/``test`` files or a random split. Ranking: head and tail share one entity id space
  (the first and third columns are the same kind of thing, as in a knowledge graph). Rating:
  each column has its own ids. ``nasp data prepare ml-100k-dow`` makes such a file from
  MovieLens-100K (``sif/contexts.py``).
* **Ranking task**: the knowledge-graph completion protocol. Training is 1-N scoring with binary
  cross-entropy (Dettmers et al., ConvE, AAAI 2018; TuckER): a query (head, relation) is scored
  against every entity as a tail, its targets the tails training knows for it; likewise
  (relation, tail) against every entity as a head. Evaluation ranks the true tail given
  (head, relation) and the true head given (relation, tail) among every entity, after removing
  every other entity that forms a known triple of train, valid or test ("filtered"); MRR and
  Hits@1/3/10 are averaged over both directions. A tie counts half (the mean of the optimistic
  and the pessimistic rank).
* **Rating task**: the value of each row predicted as the global mean, a bias per id of each
  column and the model's interaction score, trained by squared error with per-row L2 and
  Adagrad as the two-way rating models are; RMSE and MAE, predictions clipped to the training
  range.
* **Models**: the baselines CP (separate head and tail tables), DistMult (one entity table:
  ranking only), ComplEx, TuckER and an MLP over the three embeddings (``BASELINES``), and the
  searched space (``CompositionNetwork``): three embeddings composed as ``w . op2(op1(x, y), z)``
  over every pairing, one row of alphas mixed by the core's rules, so every strategy of the
  core searches it.

Modules: ``data`` (readers, splits), ``space`` (the compositions), ``models`` (baselines and the
searched network), ``tasks`` (batches, losses, metrics), ``saved`` (arch files, model.pt, the
recommender), ``training`` (settings, training, search, ``fit``)."""
from __future__ import annotations

from .data import (  # noqa: F401
    WAYS, check_ways, VALUE_NAMES, TYPED, TripleRows, read_rows, read_triples, TripleSplits,
    encode, load, resolve,
)
from .space import (  # noqa: F401
    concat, OPS, INNER_OPS, PAIRINGS, Composition, weighted_l1, hermitian, hermitian_all,
    product_all, HermitianProduct, HERMITIAN, compositions, SPACE, PRODUCT, check_candidate,
)
from .models import (  # noqa: F401
    TripleModel, RatingHead, predict, Broadcast, ComplexTable, vectors, CP, DistMult,
    DISTMULT_NEEDS_SHARED, ComplEx, TuckER, MLP, BASELINES, CompositionNetwork, TensorConfig,
)
from .tasks import (  # noqa: F401
    HITS, MAX_TARGETS, known_answers, one_to_n, query_batches, loss_fn, ranking_filter,
    filtered_ranks, metrics, evaluate, row_batches, make_rating_loss, rating_metrics,
)
from .saved import (  # noqa: F401
    ARCH_FORMAT, MODEL_FILE, arch_ways, check_arch_ways, load_arch, save, is_triple_model,
    saved_task, TripleRecommender,
)
from .training import (  # noqa: F401
    LocalDefaults, LOCAL_DEFAULTS, TensorSettings, RATING_DEFAULTS, Protocol, train,
    chosen_state, search, data_summary, fit, UNUSED, RANKING_UNUSED, check_options, settings_of,
    fit_options,
)
