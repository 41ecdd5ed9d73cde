from clinreason.domain.items import Item, content_hash, detect_language, item_id, normalise_text


def test_normalisation_collapses_whitespace_and_unicode_forms():
    assert normalise_text("  a\tb \n c ") == "a b c"
    assert normalise_text("e\u0301") == normalise_text("\u00e9")


def test_hash_ignores_layout_but_not_content():
    a = content_hash("What is  it?", {"A": "x", "B": "y"}, ["A"], None)
    assert a == content_hash(" What is it? ", {"A": "x ", "B": "y"}, ["A"], None)
    assert a != content_hash("What is it?", {"A": "x", "B": "y"}, ["B"], None)
    assert a != content_hash("What is it?", {"A": "x", "B": "z"}, ["A"], None)
    assert a != content_hash("what is it?", {"A": "x", "B": "y"}, ["A"], None)


def test_answer_is_a_set_order_does_not_matter():
    opts = {"A": "1", "B": "2", "C": "3"}
    assert content_hash("q", opts, ["A", "C"], None) == content_hash("q", opts, ["C", "A"], None)


def test_item_ids_are_stable_and_separate_projects():
    digest = content_hash("q", {"A": "1", "B": "2"}, ["A"], None)
    assert item_id("default", digest) == item_id("default", digest) == digest[:20]
    assert item_id("other", digest) != item_id("default", digest)


def test_language_detection():
    assert detect_language("夜间阵发性呼吸困难，可见于") == "zh"
    assert detect_language("A 45-year-old man presents with chest pain") == "en"
    assert detect_language("患者 CT 示 ST 段抬高，诊断为") == "zh"


def test_gold_answer_presence():
    assert not Item(question="q", options={"A": "1", "B": "2"}, answer_labels=[]).has_gold_answer
    assert Item(question="q", options={}, answer_labels=[], answer_text="yes").has_gold_answer
