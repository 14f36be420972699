"""TF-IDF features of scored rows, shared by the TF-IDF baselines (logistic regression for classes, ridge
regression for numbers) and by the run report's top features.

- one text: word 1-2-gram + character 3-5-gram TF-IDF (``WORD`` and ``CHAR`` parts of one FeatureUnion);
- a relation: the sentence plus prefixed words of each entity and of the words between them
  (``relation_text``);
- a sentence pair: the two texts' vectors from one vectorizer fitted on both, side by side, with their
  absolute difference, their element-wise product and their cosine similarity (the classic pair features
  of SentEval-style probes), so the model sees both texts and how they overlap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

Rows = Sequence[dict[str, Any]]
E1 = re.compile(r"<e1>(.*?)</e1>", re.S)
E2 = re.compile(r"<e2>(.*?)</e2>", re.S)
WORD = re.compile(r"\w+")


def make_vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)),
        ]
    )


def is_pair(rows: Rows) -> bool:
    return bool(rows) and "text_b" in rows[0]


class TextFeatures:
    """Fitted on training rows; ``transform`` turns any rows of the same shape into a feature matrix."""

    def __init__(self, train: Rows, kind: str):
        self.kind = kind
        self.pair = is_pair(train)
        self.vectorizer = make_vectorizer()
        texts = [self._text(r["text"]) for r in train]
        if self.pair:
            texts += [r["text_b"] for r in train]
        self.vectorizer.fit(texts)

    def _text(self, text: str) -> str:
        return relation_text(text) if self.kind == "relation" else text

    def transform(self, rows: Rows):
        if not self.pair:
            return self.vectorizer.transform([self._text(r["text"]) for r in rows])
        return pair_matrix(
            self.vectorizer.transform([r["text"] for r in rows]),
            self.vectorizer.transform([r["text_b"] for r in rows]),
        )

    def word_names(self) -> list[str]:
        """The word n-gram part's feature names (the first block of columns of a single-text matrix)."""
        return list(self.vectorizer.transformer_list[0][1].get_feature_names_out())


def pair_matrix(a, b):
    """[a, b, |a - b|, a * b, cos(a, b)] for TF-IDF rows (L2-normalised, so the cosine is the row-wise dot)."""
    import numpy as np
    from scipy import sparse

    cosine = np.asarray(a.multiply(b).sum(axis=1))
    return sparse.hstack([a, b, abs(a - b), a.multiply(b), sparse.csr_matrix(cosine)]).tocsr()


def relation_text(text: str) -> str:
    """The sentence plus prefixed words of e1, e2 and the words between them."""
    e1, e2 = E1.search(text), E2.search(text)
    plain = re.sub(r"</?e[12]>", " ", text)
    if e1 is None or e2 is None:
        return plain
    first, second = sorted((e1, e2), key=lambda m: m.start())
    between = re.sub(r"</?e[12]>", " ", text[first.end() : second.start()])
    parts = [plain, "order_" + ("e1e2" if first is e1 else "e2e1")]
    parts += [f"e1_{w}" for w in WORD.findall(e1.group(1).lower())]
    parts += [f"e2_{w}" for w in WORD.findall(e2.group(1).lower())]
    parts += [f"btw_{w}" for w in WORD.findall(between.lower())]
    return " ".join(parts)
