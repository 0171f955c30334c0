import shutil
import time

import pytest

from wvlp.data.knowledge import imagenet_wnids
from wvlp.data.wordnet import WORDNET_DIR, WordNet, split_gloss

TENCH, SANDAL, SHOE, FOOTWEAR, TEE_SHIRT = "n01440764", "n04133789", "n04199027", "n03380867", "n03595614"
ARTIFACT, ENTITY = "n00021939", "n00001740"


@pytest.fixture(scope="module")
def wn() -> WordNet:
    return WordNet.load()


def test_load_is_fast_and_cached(tmp_path):
    for name in ("data.noun", "index.noun", "noun.exc"):
        shutil.copy(WORDNET_DIR / name, tmp_path / name)
    start = time.perf_counter()
    wordnet = WordNet.load(tmp_path)
    assert time.perf_counter() - start < 4.0  # ~0.8 s here; headroom for a loaded CI machine
    assert len(wordnet) == 82115
    assert WordNet.load(tmp_path) is wordnet


def test_missing_wordnet_names_the_debian_packages(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base wordnet-sense-index"):
        WordNet.load(tmp_path)


def test_all_imagenet_wnids_resolve(wn):
    wnids = imagenet_wnids()
    assert len(set(wnids)) == 1000
    assert all(wnid in wn for wnid in wnids)
    assert all(wn.synset(wnid).gloss for wnid in wnids)


def test_tench(wn):
    tench = wn.synset(TENCH)
    assert tench.wnid == TENCH
    assert tench.lemmas == ("tench", "Tinca tinca")
    assert tench.gloss.startswith("freshwater dace-like game fish")
    assert tench.examples == ()
    assert tench.hypernyms == ("n01439121",)


def test_examples_are_split_from_the_definition(wn):
    congener = wn.synset("n00003993")
    assert congener.gloss == "a whole (a thing or person) of the same kind or category as another"
    assert congener.examples[0].startswith("lard was also used")
    assert not any('"' in example for example in congener.examples)
    raw = 'significant progress (especially in the phrase "make strides"); "they made big strides"'
    definition, examples = split_gloss(raw)
    assert definition == 'significant progress (especially in the phrase "make strides")'
    assert examples == ("they made big strides",)


def test_lookup(wn):
    assert wn.lookup("ankle boot") == []  # not a WordNet lemma: callers fall back to the head noun
    assert wn.lookup("no such thing at all") == []
    assert [s.wnid for s in wn.lookup("sandal")] == [SANDAL]
    assert wn.lookup("boot")[0].gloss.startswith("footwear")
    assert {wn.lookup(name)[0].wnid for name in ("T-shirt", "t shirt", "TEE_SHIRT", "tee-shirt")} == {TEE_SHIRT}
    assert wn.lookup("coat")[0].gloss.startswith("an outer garment")  # most frequent sense first
    assert wn.lookup("bag")[0].gloss == "a flexible container with a single opening"
    assert wn.lookup("Trousers")[0].wnid == "n04489008"  # morphological base form
    assert wn.lookup("mice")[0].lemmas == ("mouse",)  # noun.exc exception list
    assert len(wn.lookup("sneaker")) == 2


def test_hierarchy(wn):
    assert wn.synset(SANDAL).hypernyms == (SHOE,)
    assert {SHOE, FOOTWEAR, ARTIFACT, ENTITY} <= wn.ancestors(SANDAL)
    assert wn.ancestors(ENTITY) == set()
    below_footwear = wn.hyponym_closure(FOOTWEAR)
    assert {SHOE, SANDAL, wn.lookup("sneaker")[0].wnid, wn.lookup("boot")[0].wnid} <= below_footwear
    assert FOOTWEAR not in below_footwear
    assert len(wn.hyponym_closure(ENTITY)) == len(wn) - 1
    assert wn.hypernyms_at(SANDAL, 2) == {FOOTWEAR}
    assert wn.hypernyms_at(ENTITY, 3) == {ENTITY}


def test_instance_hypernyms(wn):
    einstein = wn.lookup("Einstein")[0]
    assert wn.lookup("physicist")[0].wnid in einstein.hypernyms
    assert einstein.wnid in wn.hyponym_closure(wn.lookup("physicist")[0].wnid)


def test_unknown_wnid(wn):
    with pytest.raises(KeyError, match="n99999999"):
        wn.synset("n99999999")
    with pytest.raises(KeyError, match="8 digits"):
        wn.synset("tench")
