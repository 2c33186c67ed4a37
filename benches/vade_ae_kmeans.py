"""AE + k-means: scikit-learn k-means (n_init=10) on a VaDE run's encoder means (`mixburn vade evaluate --means M.npy` on its checkpoint at joint epoch 0: the pre-trained encoder), scored against the Fashion-MNIST labels (train then test) by ACC (Hungarian), NMI and ARI.

    python3 benches/vade_ae_kmeans.py M.npy
"""
import gzip, json, sys
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score, adjusted_rand_score

d = "/usr/share/datasets/fashion-mnist"
labels = np.concatenate([np.frombuffer(gzip.open(f"{d}/{n}-labels-idx1-ubyte.gz").read()[8:], dtype=np.uint8)
                         for n in ("train", "t10k")]).astype(int)
z = np.load(sys.argv[1]).astype(np.float64)
pred = KMeans(10, n_init=10, random_state=0).fit_predict(z)
cm = np.zeros((10, 10), dtype=int)
for p, t in zip(pred, labels):
    cm[p, t] += 1
r, c = linear_sum_assignment(-cm)
print(json.dumps({"method": "k-means (scikit-learn, n_init=10) on the pre-trained encoder means",
                  "acc": cm[r, c].sum() / len(labels), "nmi": normalized_mutual_info_score(labels, pred),
                  "ari": adjusted_rand_score(labels, pred), "n": len(labels)}))
