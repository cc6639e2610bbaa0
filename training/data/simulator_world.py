"""The simulated feed's generative model: users, items, impressions and the labels' true probabilities.

See ``training.data.simulator`` for the story and the writer. Every label term is visible to a model
through some feature or id (taste through age, gender and the history; quality through popularity and
the item id; the latent factors through the ids), so the Bayes-optimal AUC is a real ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

AGES = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_P = (0.2, 0.3, 0.25, 0.15, 0.1)
GENDERS = ("F", "M")
DEVICES = ("android", "ios", "web")
DEVICE_P = (0.5, 0.4, 0.1)
N_CITIES, N_POSITIONS, MAX_HISTORY, LATENT_DIM = 30, 20, 30, 8
# Impressions per hour of day: low at night, peaks at lunch and in the evening.
HOUR_P = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 5, 5, 6, 8, 7, 5, 5, 5, 6, 7, 8, 9, 8, 6, 4], float)
HOUR_P /= HOUR_P.sum()

# Weights of the taste components (logits over categories) and of the click terms.
TASTE_AGE, TASTE_GENDER, TASTE_PERSONAL = 1.5, 1.0, 0.7
CLICK_AFFINITY, CLICK_QUALITY, CLICK_LATENT, CLICK_POSITION = 0.85, 0.8, 0.4, 0.5
# The click score is rescaled to this spread, which sets the Bayes-optimal click AUC (about 0.83)
# whatever the random world looks like.
CLICK_LOGIT_STD = 1.8

LATENT_TASKS = ("click", "convert", "watch_time", "like", "share")
# ESM²'s post-click "direct actions" (add-to-cart, wish-list): how often a buyer took each one.
# Non-buyers take them with feature-driven probabilities calibrated to ``cart_rate``/``wish_rate``,
# so the funnel click -> {action, other} -> purchase exists and purchase is likelier after an action.
BUYER_CART, BUYER_WISH = 0.7, 0.25


@dataclass(frozen=True)
class SimulatorConfig:
    """Knobs of the simulated feed; rates are targets the intercepts are calibrated to."""

    rows: int
    seed: int = 0
    users: int | None = None  # default: rows / 50 within [200, 200k]
    items: int | None = None  # default: rows / 100 within [100, 50k]
    categories: int = 20
    task_correlation: float = 0.6  # share of each task's user factor taken from the shared one
    click_rate: float = 0.07  # of impressions
    convert_rate: float = 0.035  # of clicks
    like_rate: float = 0.2  # of clicks
    share_rate: float = 0.05  # of clicks
    personalised: float = 0.6  # share of impressions whose category follows the user's taste
    cart_rate: float = 0.12  # add-to-cart, of clicks that do not convert
    wish_rate: float = 0.08  # wish-list, of clicks that do not convert
    # 0: independent impressions; K: requests of K impressions (one user, hour and device, display
    # positions 0..K-1) with a ``request_id`` column, for learning to rank and fusion search.
    request_size: int = 0
    history_length: int = MAX_HISTORY  # longest behaviour history (the spec's sequence max_length)

    @property
    def n_users(self) -> int:
        return self.users if self.users is not None else int(np.clip(self.rows // 50, 200, 200_000))

    @property
    def n_items(self) -> int:
        return self.items if self.items is not None else int(np.clip(self.rows // 100, 100, 50_000))


@dataclass(frozen=True)
class World:
    """Entity tables plus the hidden parameters that generate labels."""

    age: Ints
    gender: Ints
    city: Ints
    activity: Floats
    taste: Floats  # (U, C) probability of each category
    taste_cdf: Floats  # (U * C,) see _taste_cdf
    hist_offsets: Ints  # (U + 1,) into hist_values
    hist_values: Ints  # item ids (1-based), oldest first
    latent_user: dict[str, Floats]  # task -> (U, K)
    category: Ints
    price: Floats
    log_price_z: Floats  # price relative to its category, standardised
    quality: Floats
    popularity: Floats
    latent_item: Floats  # (I, K)
    hour_effect: Floats  # (4 day parts, C)
    items_by_category: list[Ints]
    item_cdf_by_category: list[Floats]
    category_p: Floats


def build_world(config: SimulatorConfig, rng: np.random.Generator) -> World:
    """Draw users and items; histories are items of the user's favourite categories."""
    n_u, n_i, n_c, k = config.n_users, config.n_items, config.categories, LATENT_DIM
    age = rng.choice(len(AGES), n_u, p=AGE_P)
    gender = rng.integers(0, 2, n_u)
    city = np.minimum(rng.zipf(1.6, n_u) - 1, N_CITIES - 1)
    activity = rng.lognormal(0.0, 0.7, n_u)
    taste_logits = (
        TASTE_AGE * rng.standard_normal((len(AGES), n_c))[age]
        + TASTE_GENDER * rng.standard_normal((2, n_c))[gender]
        + TASTE_PERSONAL * rng.standard_normal((n_u, n_c))
    )
    taste = _softmax(taste_logits)
    category_p = rng.dirichlet(np.full(n_c, 2.0))
    category = rng.choice(n_c, n_i, p=category_p)
    mu_price = rng.uniform(1.5, 4.5, n_c)
    log_price_z = rng.standard_normal(n_i)
    price = np.round(np.exp(mu_price[category] + 0.6 * log_price_z), 2)
    quality = rng.standard_normal(n_i)
    popularity = np.round(np.exp(3.0 + 0.9 * quality + 0.3 * rng.standard_normal(n_i)))
    items_by_category, cdfs = [], []
    for c in range(n_c):
        members = np.flatnonzero(category == c)
        if members.size == 0:  # every category holds at least one item
            members = np.array([c % n_i])
        weight = np.sqrt(popularity[members] + 1.0)
        items_by_category.append(members)
        cdfs.append(np.cumsum(weight) / weight.sum())
    world_partial = (items_by_category, cdfs)
    hist_len = np.minimum(rng.poisson(6.0 * activity + 2.0), config.history_length)
    hist_offsets = np.concatenate([[0], np.cumsum(hist_len)])
    owner = np.repeat(np.arange(n_u), hist_len)
    hist_cat = _sample_categories(_taste_cdf(taste), n_c, owner, rng)
    hist_values = _pick_items(hist_cat, world_partial, rng) + 1
    shared = rng.standard_normal((n_u, k)) / k**0.25
    rho = config.task_correlation
    latent_user = {
        t: rho * shared + np.sqrt(1 - rho**2) * rng.standard_normal((n_u, k)) / k**0.25
        for t in LATENT_TASKS
    }
    return World(
        age=age,
        gender=gender,
        city=city,
        activity=np.round(activity, 3),
        taste=taste,
        taste_cdf=_taste_cdf(taste),
        hist_offsets=hist_offsets,
        hist_values=hist_values,
        latent_user=latent_user,
        category=category,
        price=price.astype(np.float64),
        log_price_z=log_price_z,
        quality=quality,
        popularity=popularity.astype(np.float64),
        latent_item=rng.standard_normal((n_i, k)) / k**0.25,
        hour_effect=0.5 * rng.standard_normal((4, n_c)),
        items_by_category=items_by_category,
        item_cdf_by_category=cdfs,
        category_p=category_p,
    )


def _softmax(logits: Floats) -> Floats:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: Floats = e / e.sum(axis=1, keepdims=True)
    return result


def _taste_cdf(taste: Floats) -> Floats:
    """Per-user category CDFs laid end to end: user k's row is k + cdf_k (one sorted array)."""
    cdf = np.cumsum(taste, axis=1)
    cdf /= cdf[:, -1:]
    flat: Floats = (cdf + np.arange(taste.shape[0])[:, None]).ravel()
    return flat


def _sample_categories(
    flat_cdf: Floats, n_categories: int, who: Ints, rng: np.random.Generator
) -> Ints:
    """One category per row from user ``who``'s taste: inverse CDF, no (rows, C) matrix."""
    draws: Floats = rng.random(int(who.size))
    index = np.searchsorted(flat_cdf, who + draws, side="right")
    result: Ints = np.minimum(index - who * n_categories, n_categories - 1)
    return result


def _pick_items(
    cats: Ints, by_cat: tuple[list[Ints], list[Floats]], rng: np.random.Generator
) -> Ints:
    """Item index per row: within the row's category, proportional to sqrt(popularity)."""
    out = np.empty(cats.size, dtype=np.int64)
    u = rng.random(cats.size)
    for c in np.unique(cats):
        rows = np.flatnonzero(cats == c)
        members, cdf = by_cat[0][c], by_cat[1][c]
        out[rows] = members[np.minimum(np.searchsorted(cdf, u[rows]), members.size - 1)]
    return out


@dataclass(frozen=True)
class Intercepts:
    """Logit offsets calibrated so the rates hit the config's targets."""

    click_scale: float  # makes the click score's spread CLICK_LOGIT_STD in every world
    click: float
    convert: float
    like: float
    share: float
    cart: float = 0.0
    wish: float = 0.0


@dataclass(frozen=True)
class Chunk:
    user: Ints
    item: Ints
    hour: Ints
    device: Ints
    position: Ints
    click_p: Floats  # the true click probabilities
    # The true click probabilities averaged over the display positions a row could have been shown
    # at: the best a model that never sees the position (a served model) can know.
    click_p_served: Floats
    convert_p: Floats  # the true conversion probabilities given a click
    labels: dict[str, npt.NDArray[np.float32]]
    request: Ints | None = None  # request id of each row (request_size > 0)


def _logits(
    world: World, u: Ints, i: Ints, hour: Ints, device: Ints, position: Ints
) -> dict[str, Floats]:
    """Label scores before the intercepts; every term is visible through some feature or id."""
    c = world.category[i]
    affinity = np.log(world.taste[u, c] * world.taste.shape[1])  # 0 = average taste

    def latent(task: str) -> Floats:
        dot: Floats = np.einsum("nk,nk->n", world.latent_user[task][u], world.latent_item[i])
        return dot

    q, price = world.quality[i], world.log_price_z[i]
    return {
        "click": CLICK_AFFINITY * affinity
        + CLICK_QUALITY * q
        + world.hour_effect[hour // 6, c]
        + np.array([0.0, 0.15, -0.3])[device]
        - 0.25 * price
        + CLICK_LATENT * latent("click")
        - CLICK_POSITION * np.log1p(position),
        "convert": 0.9 * latent("convert") - 0.6 * price + 0.4 * affinity + 0.3 * q,
        "watch_time": 3.2 + 0.5 * latent("watch_time") + 0.3 * affinity + 0.2 * q,
        "like": 0.9 * latent("like") + 0.5 * affinity + 0.5 * q,
        "share": 0.9 * latent("share") + 0.3 * affinity + 0.6 * q,
        "cart": 0.7 * latent("convert") + 0.5 * affinity - 0.3 * price + 0.2 * q,
        "wish": 0.7 * latent("like") + 0.4 * affinity + 0.4 * price,
    }


def _sigmoid(x: Floats) -> Floats:
    result: Floats = 0.5 * (1.0 + np.tanh(0.5 * x))
    return result


def _offset(base: Floats, weight: Floats, target: float) -> float:
    """Intercept b with the weighted mean of sigmoid(base + b) equal to target (bisection)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        rate = float(np.average(_sigmoid(base + mid), weights=weight))
        lo, hi = (mid, hi) if rate < target else (lo, mid)
    return (lo + hi) / 2


def _draw(
    world: World, config: SimulatorConfig, rng: np.random.Generator, n: int
) -> tuple[Ints, ...]:
    """Who saw what, when, on which device, at which position."""
    if config.request_size > 0:
        return _draw_requests(world, config, rng, n)
    activity_cdf = np.cumsum(world.activity) / world.activity.sum()
    u = np.minimum(np.searchsorted(activity_cdf, rng.random(n)), activity_cdf.size - 1)
    followed = _sample_categories(world.taste_cdf, world.taste.shape[1], u, rng)
    popular = rng.choice(world.category_p.size, n, p=world.category_p)
    cats = np.where(rng.random(n) < config.personalised, followed, popular)
    i = _pick_items(cats, (world.items_by_category, world.item_cdf_by_category), rng)
    hour = rng.choice(24, n, p=HOUR_P)
    device = rng.choice(len(DEVICES), n, p=DEVICE_P)
    position = rng.integers(0, N_POSITIONS, n)
    return u, i, hour, device, position


def _draw_requests(
    world: World, config: SimulatorConfig, rng: np.random.Generator, n: int
) -> tuple[Ints, ...]:
    """Like ``_draw``, but rows come in requests of ``request_size``: one user, hour and device
    per request, its items at display positions 0..K-1 (the last request may be shorter)."""
    k = config.request_size
    n_req = -(-n // k)
    activity_cdf = np.cumsum(world.activity) / world.activity.sum()
    users = np.minimum(np.searchsorted(activity_cdf, rng.random(n_req)), activity_cdf.size - 1)
    u = np.repeat(users, k)[:n]
    followed = _sample_categories(world.taste_cdf, world.taste.shape[1], u, rng)
    popular = rng.choice(world.category_p.size, n, p=world.category_p)
    cats = np.where(rng.random(n) < config.personalised, followed, popular)
    i = _pick_items(cats, (world.items_by_category, world.item_cdf_by_category), rng)
    hour = np.repeat(rng.choice(24, n_req, p=HOUR_P), k)[:n]
    device = np.repeat(rng.choice(len(DEVICES), n_req, p=DEVICE_P), k)[:n]
    position = np.tile(np.arange(k), n_req)[:n]
    return u, i, hour, device, position


def calibrate(world: World, config: SimulatorConfig, rng: np.random.Generator) -> Intercepts:
    """Fit the intercepts on a pilot sample (conditional tasks weighted by the click probability)."""
    logits = _logits(world, *_draw(world, config, rng, 50_000))
    scale = CLICK_LOGIT_STD / float(logits["click"].std())
    ones = np.ones_like(logits["click"])
    b_click = _offset(scale * logits["click"], ones, config.click_rate)
    p_click = _sigmoid(scale * logits["click"] + b_click)
    b_like = _offset(logits["like"], p_click, config.like_rate)
    share = logits["share"] + 0.8 * _sigmoid(logits["like"] + b_like)
    b_convert = _offset(logits["convert"], p_click, config.convert_rate)
    not_bought = p_click * (1.0 - _sigmoid(logits["convert"] + b_convert))
    return Intercepts(
        click_scale=scale,
        click=b_click,
        convert=b_convert,
        like=b_like,
        share=_offset(share, p_click, config.share_rate),
        cart=_offset(logits["cart"], not_bought, config.cart_rate),
        wish=_offset(logits["wish"], not_bought, config.wish_rate),
    )


def simulate_chunk(
    world: World, config: SimulatorConfig, b: Intercepts, rng: np.random.Generator, n: int
) -> Chunk:
    """One chunk of impressions with labels following the click funnel."""
    u, i, hour, device, position = _draw(world, config, rng, n)
    z = _logits(world, u, i, hour, device, position)
    p_click = _sigmoid(b.click_scale * z["click"] + b.click)
    unplaced = z["click"] + CLICK_POSITION * np.log1p(position)  # the score without its position
    shown = range(config.request_size or N_POSITIONS)  # positions a row is shown at, equally likely
    p_served = np.mean(
        [
            _sigmoid(b.click_scale * (unplaced - CLICK_POSITION * np.log1p(k)) + b.click)
            for k in shown
        ],
        axis=0,
    )
    click = rng.random(n) < p_click
    p_convert = _sigmoid(z["convert"] + b.convert)
    convert = click & (rng.random(n) < p_convert)
    seconds = np.round(np.exp(z["watch_time"] + 0.5 * rng.standard_normal(n)), 1)
    p_like = _sigmoid(z["like"] + b.like)
    like = click & (rng.random(n) < p_like)
    share = click & (rng.random(n) < _sigmoid(z["share"] + 0.8 * p_like + b.share))
    # Drawn after every earlier label, so the columns above do not depend on these.
    cart = click & (rng.random(n) < np.where(convert, BUYER_CART, _sigmoid(z["cart"] + b.cart)))
    wish = click & (rng.random(n) < np.where(convert, BUYER_WISH, _sigmoid(z["wish"] + b.wish)))
    labels = {
        "click": click.astype(np.float32),
        "convert": convert.astype(np.float32),
        "watch_time": np.where(click, seconds, 0.0).astype(np.float32),
        "like": like.astype(np.float32),
        "share": share.astype(np.float32),
        "cart": cart.astype(np.float32),
        "wish": wish.astype(np.float32),
    }
    request = None
    if config.request_size > 0:  # random 62-bit ids: unique whatever the chunking
        ids = rng.integers(0, 2**62, -(-n // config.request_size))
        request = np.repeat(ids, config.request_size)[:n]
    return Chunk(u, i, hour, device, position, p_click, p_served, p_convert, labels, request)
