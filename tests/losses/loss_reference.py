"""Independent float64 double-loop implementations of losses.md, written from the formulas only."""

from __future__ import annotations

import math


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def kernel_value(name, sigma, ya, yb):
    """K(ya - yb) for label tuples (spec formulas)."""
    m = len(ya)
    sig = list(sigma) if isinstance(sigma, (list, tuple)) else [sigma] * m
    d = [a - b for a, b in zip(ya, yb)]
    if name == "dirac":
        return 1.0 if all(a == b for a, b in zip(ya, yb)) else 0.0
    if name == "rbf":
        return math.exp(-0.5 * sum((x / s) ** 2 for x, s in zip(d, sig)))
    if name == "gaussian":
        return math.exp(-0.5 * sum((x / s) ** 2 for x, s in zip(d, sig))) / (
            (2 * math.pi) ** (m / 2) * math.prod(sig)
        )
    if name == "cauchy":
        return 1.0 / (sum(s * x * x for x, s in zip(d, sig)) + 1.0)
    raise KeyError(name)


def layout(z1, z2, y, queue_z=None, queue_y=None):
    """Rows (2N view-major, then queue) as unit vectors, their label tuples, N."""
    n = len(z1)
    rows = [unit(v) for v in z1] + [unit(v) for v in z2]
    if y is None:
        labels = [(float(i),) for i in range(n)] * 2
    else:
        labels = [tuple(v) if isinstance(v, (list, tuple)) else (v,) for v in y] * 2
    if queue_z is not None:
        rows += [unit(v) for v in queue_z]
        if y is None or queue_y is None:
            labels += [(-1.0 - j,) for j in range(len(queue_z))]
        else:
            labels += [
                tuple(v) if isinstance(v, (list, tuple)) else (v,) for v in queue_y
            ]
    return rows, labels, n


def lse(values):
    return math.log(sum(math.exp(v) for v in values))


def reference_loss(
    name,
    z1,
    z2,
    y=None,
    queue_z=None,
    queue_y=None,
    temperature=0.1,
    base_temperature=None,
    reduction="mean",
    kernel="rbf",
    sigma=1.0,
    normalize="row",
    variant="paper",
    epsilon=0.0,
    exclude_positive=True,
):
    """Per-anchor terms reduced as the spec says. Inputs are nested lists of floats."""
    if name in ("infonce", "dcl"):
        y, queue_y = None, None
    if (
        name in ("infonce", "dcl", "supcon", "eps_supinfonce", "eps_supcon")
        or y is None
    ):
        kernel = "dirac"
    rows, labels, n = layout(z1, z2, y, queue_z, queue_y)
    c = len(rows)
    s = [
        [sum(p * q for p, q in zip(rows[a], rows[b])) / temperature for b in range(c)]
        for a in range(c)
    ]
    K = [
        [kernel_value(kernel, sigma, labels[a], labels[b]) for b in range(c)]
        for a in range(c)
    ]
    terms = []
    for a in range(2 * n):
        partner = (a + n) % (2 * n)
        others = [b for b in range(c) if b != a]
        if name == "infonce":
            terms.append(-s[a][partner] + lse([s[a][b] for b in others]))
            continue
        if name == "dcl":
            neg = [b for b in others if b != partner]
            terms.append(-s[a][partner] + lse([s[a][b] for b in neg]) if neg else 0.0)
            continue
        W = {b: K[a][b] for b in others}
        if normalize == "col":
            col = {b: sum(K[cc][b] for cc in range(2 * n) if cc != b) for b in others}
            Wn = {b: (W[b] / col[b] if col[b] > 0 else 0.0) for b in others}
        else:
            tot = sum(W.values())
            Wn = {b: (W[b] / tot if tot > 0 else 0.0) for b in others}
        pos = [b for b in others if W[b] > 0]
        neg = [b for b in others if W[b] == 0]
        total = 0.0
        if name == "eps_supinfonce":
            for p in pos:
                den = math.exp(-epsilon) * math.exp(s[a][p]) + sum(
                    math.exp(s[a][q]) for q in neg
                )
                total += Wn[p] * (s[a][p] - math.log(den))
        elif name == "eps_supcon":
            den = math.exp(-epsilon) * sum(math.exp(s[a][q]) for q in pos) + sum(
                math.exp(s[a][q]) for q in neg
            )
            for p in pos:
                total += Wn[p] * (s[a][p] - math.log(den))
        elif name in ("supcon", "yaware"):
            den = lse([s[a][b] for b in others])
            for p in others:
                total += Wn[p] * (s[a][p] - den)
        elif name == "thr" and variant == "paper":
            for k in others:
                R = [t for t in others if K[a][t] < K[a][k]]
                if R and Wn[k] > 0:
                    total += Wn[k] * (s[a][k] - lse([s[a][t] for t in R]))
        elif name == "thr":
            cnt = {b: sum(1 for k in range(2 * n) if K[b][k] < K[b][a]) for b in others}
            D = sum(cnt[b] * math.exp(s[a][b]) for b in others)
            for p in others:
                if Wn[p] > 0 and D > 0:
                    total += Wn[p] * (s[a][p] - math.log(D))
        elif name == "exp" and variant == "paper":
            for k in others:
                T = [t for t in others if t != k] if exclude_positive else others
                if T and Wn[k] > 0:
                    total += Wn[k] * (
                        s[a][k] - lse([s[a][t] * (1 - K[a][t]) for t in T])
                    )
        elif name == "exp":
            mx = max(s[a])
            lg = [v - mx for v in s[a]]
            den = lse([lg[t] * (1 - K[a][t]) for t in others])
            for p in others:
                total += Wn[p] * (lg[p] - den)
        else:
            raise KeyError(name)
        terms.append(-total)
    factor = 1.0 if base_temperature is None else temperature / base_temperature
    terms = [factor * t for t in terms]
    if reduction == "none":
        return terms
    return sum(terms) / (2 * n if reduction == "mean" else n)


def reference_fairkl(
    z1,
    z2,
    y,
    bias,
    temperature=1.0,
    kernel="dirac",
    sigma=1.0,
    mode="paper",
    kld=1.0,
    views="both",
):
    """FairKL by loops over pairs (spec)."""
    n = len(z1)
    rows = [unit(v) for v in z1] + ([unit(v) for v in z2] if views == "both" else [])
    labs = [tuple(v) if isinstance(v, (list, tuple)) else (v,) for v in y]
    labs = labs * (len(rows) // n)
    bias = list(bias) * (len(rows) // n)
    r = len(rows)
    S = [
        [sum(p * q for p, q in zip(rows[a], rows[b])) / temperature for b in range(r)]
        for a in range(r)
    ]
    sets = {k: [] for k in ("PA", "PC", "NA", "NC")}  # (similarity, weight)
    for a in range(r):
        for b in range(r):
            if a == b and mode == "paper":
                continue
            k = kernel_value(kernel, sigma, labs[a], labs[b])
            same = bias[a] == bias[b]
            pa = (k if same else 0.0, k if not same else 0.0)
            na = ((1 - k) if same else 0.0, (1 - k) if not same else 0.0)
            if a == b:  # code mode: self-pairs only in PA
                sets["PA"].append((S[a][b], k if same else 0.0))
                for key in ("PC", "NA", "NC"):
                    sets[key].append((S[a][b], 0.0))
                continue
            sets["PA"].append((S[a][b], pa[0]))
            sets["PC"].append((S[a][b], pa[1]))
            sets["NA"].append((S[a][b], na[0]))
            sets["NC"].append((S[a][b], na[1]))
    if mode == "paper":

        def mom(pairs):
            w = sum(q for _, q in pairs)
            if w == 0:
                return None
            mu = sum(v * q for v, q in pairs) / w
            var = sum(q * (v - mu) ** 2 for v, q in pairs) / w + 1e-12
            return mu, var

        def kl(p, q):
            if p is None or q is None:
                return 0.0
            (m0, v0), (m1, v1) = p, q
            return 0.5 * (v0 / v1 + (m0 - m1) ** 2 / v1 - 1 + math.log(v1 / v0))

        m = {k: mom(v) for k, v in sets.items()}
        return kl(m["PA"], m["PC"]) + kl(m["NA"], m["NC"])
    mu, sd = {}, {}
    for key, pairs in sets.items():
        vals = [v * q for v, q in pairs]  # all r*r entries of S o X
        mu[key] = sum(vals) / max(sum(q for _, q in pairs), 1.0)
        mean = sum(vals) / len(vals)
        sd[key] = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return (
        (mu["PC"] - mu["PA"]) ** 2
        + (mu["NA"] - mu["NC"]) ** 2
        + kld * ((sd["PA"] - sd["PC"]) ** 2 + (sd["NA"] - sd["NC"]) ** 2)
        - mu["PC"]
        + mu["NA"]
    )
