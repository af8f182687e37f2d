"""Subsampling estimators of memorization and influence (Feldman & Zhang 2020), with the
evidence for each estimate and the rule that selects what is reported.

Every estimate here contrasts models trained *with* a training example against models
trained *without* it. ``masks[t, i]`` says whether model ``t`` saw training example ``i``;
``correct`` / ``test_correct`` hold each model's 0/1 correctness (or its probability of the
true label, the "soft" variant).

* ``mem(i)     = P[correct on i | i in] - P[correct on i | i out]``  (``memorization``)
* ``infl(i, z) = P[correct on z | i in] - P[correct on z | i out]``  (``influence``)

Both reduce to one shared contrast of an *in-sum* (the correctness summed over the models
that saw ``i``) against a column total (``contrast``). Memorization is the diagonal case;
influence takes the in-sums as the matrix product ``masks.T @ test_correct``, block by block
over training examples so that memory stays bounded at any ``n_train``. Each estimate
carries a 95% interval, an exact one-sided p-value and a false-discovery q-value
(``evidence``); ``Selection`` decides what is reported.
"""

from longtail.estimate.evidence import fisher_greater, newcombe, q_values, wilson
from longtail.estimate.influence import influence, influence_matrix, influence_of
from longtail.estimate.memorization import memorization
from longtail.estimate.selection import MODES, Selection, with_memorization

__all__ = [
    "memorization",
    "influence",
    "influence_matrix",
    "influence_of",
    "Selection",
    "MODES",
    "with_memorization",
    "fisher_greater",
    "newcombe",
    "q_values",
    "wilson",
]
