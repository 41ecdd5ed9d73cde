"""Every screening check on hand-written positive and negative cases, in English and Chinese."""

from clinreason.domain.checks import (
    FingerprintIndex,
    ScreenBounds,
    check_answer_leakage,
    check_answer_matches_gold,
    check_language,
    check_length,
    check_near_duplicate,
    check_options_addressed,
    check_parse,
    check_reference_agreement,
    hamming,
    reference_labels,
    run_checks,
    simhash,
)
from clinreason.domain.records import Item, RationaleVersion

EN_OPTS = {"A": "aspirin", "B": "heparin", "C": "warfarin"}
ZH_OPTS = {"A": "急性前壁心肌梗死", "B": "急性下壁心肌梗死", "C": "主动脉夹层"}
EN_TEXT = ("1. Crushing chest pain with ST elevation in V1-V4 indicates an anterior STEMI.\n"
           "2. A (aspirin) is given to all, but is not the reperfusion step; C is for atrial fibrillation.\n"
           "3. B, heparin, supports reperfusion.\nFinal answer: B")
ZH_TEXT = ("1. 胸骨后压榨性疼痛伴V1～V4导联ST段弓背向上抬高，提示急性前壁心肌梗死。\n"
           "2. 下壁梗死表现在II、III、aVF导联，故排除B；主动脉夹层多为撕裂样疼痛，排除C。\n"
           "3. 因此选A。\n最终答案：A")


def test_parse():
    assert check_parse("ok", None).passed
    bad = check_parse("failed", "no final answer line")
    assert not bad.passed and "no final answer line" in bad.detail


def test_answer_matches_gold_in_both_modes():
    assert check_answer_matches_gold(["B"], ["B"], mode="explain").passed
    assert check_answer_matches_gold(["A", "C"], ["C", "A"], mode="explain").passed
    wrong = check_answer_matches_gold(["A"], ["B"], mode="explain")
    assert not wrong.passed and "concludes A" in wrong.detail
    blind = check_answer_matches_gold(["A"], ["B"], mode="solve")
    assert not blind.passed and "worth an expert's look" in blind.detail
    assert check_answer_matches_gold([], [], mode="explain").passed  # open question


def test_options_addressed_en_and_zh():
    assert check_options_addressed(EN_OPTS, EN_TEXT).passed
    missing = check_options_addressed(EN_OPTS, "1. Heparin (B) is right.\nFinal answer: B")
    assert not missing.passed and "A, C" in missing.detail
    assert check_options_addressed(ZH_OPTS, ZH_TEXT).passed
    zh_missing = check_options_addressed(ZH_OPTS, "1. 提示前壁梗死，选A。\n最终答案：A")
    assert not zh_missing.passed and "B, C" in zh_missing.detail
    assert check_options_addressed({}, "anything").passed


def test_length_bounds():
    bounds = ScreenBounds(min_steps=2, max_steps=4, min_chars=50, max_chars=400)
    assert check_length(["a", "b", "c"], EN_TEXT, bounds).passed
    assert "fewer than 2" in check_length(["a"], EN_TEXT, bounds).detail
    assert "more than 4" in check_length(list("abcdef"), EN_TEXT, bounds).detail
    assert "fewer than 50" in check_length(["a", "b"], "short", bounds).detail
    assert "more than 400" in check_length(["a", "b"], "x" * 500, bounds).detail
    assert check_length(["一", "二"], ZH_TEXT, ScreenBounds(min_chars=20)).passed


def test_answer_leakage_en_and_zh():
    assert check_answer_leakage(EN_TEXT).passed
    assert check_answer_leakage(ZH_TEXT).passed
    for leaky in ["1. The answer key says B, so B.\nFinal answer: B", "1. The gold answer is B.",
                  "1. As the provided answer is B we agree.", "1. 根据标准答案，选B。", "1. 参考答案为A，因此选A。"]:
        result = check_answer_leakage(leaky)
        assert not result.passed, leaky
        assert "answer key" in result.detail


def test_language():
    assert check_language("en", EN_TEXT).passed
    assert check_language("zh", ZH_TEXT).passed
    wrong = check_language("zh", EN_TEXT)
    assert not wrong.passed and "written in en but the question is in zh" in wrong.detail
    assert not check_language("en", ZH_TEXT).passed


def test_near_duplicate_across_items():
    index = FingerprintIndex()
    index.add("item-1", simhash(EN_TEXT))
    index.add("item-2", simhash(ZH_TEXT))
    same = check_near_duplicate(simhash(EN_TEXT + " "), index, item_id="item-9")
    assert not same.passed and "item-1" in same.detail
    own = check_near_duplicate(simhash(EN_TEXT), index, item_id="item-1")  # its own earlier version is fine
    assert own.passed
    other = "1. Fever and neck stiffness suggest meningitis.\n2. Lumbar puncture confirms it.\nFinal answer: C"
    assert check_near_duplicate(simhash(other), index, item_id="item-9").passed
    assert hamming(simhash(EN_TEXT), simhash(EN_TEXT)) == 0
    assert check_near_duplicate(simhash(ZH_TEXT), index, item_id="item-3").passed is False


def test_reference_agreement_medmcqa_and_cmexam_styles():
    assert reference_labels("Ans. b. Heparin is given ...") == ["B"]
    assert reference_labels("左心功能不全（E对）。急性脑血管疾病（A错）") == ["E"]
    assert check_reference_agreement(["B"], "Ans. b. heparin supports reperfusion", EN_TEXT).passed
    clash = check_reference_agreement(["A"], "Ans. b. heparin", EN_TEXT)
    assert not clash.passed and "points to B" in clash.detail
    assert check_reference_agreement(["A"], None, EN_TEXT) is None
    assert check_reference_agreement(["A"], "前壁梗死（A对）", ZH_TEXT).passed


def test_run_checks_on_a_parse_failure_skips_the_answer_check():
    item = Item(id="x", project_id=1, question="q", options=[("A", "a"), ("B", "b")], answer_labels=["A"],
                language="en", state="screening")
    rat = RationaleVersion(id="r", item_id="x", version=1, origin="generated", author="model:m", steps=[],
                           final_answer=[], text="no answer here", parse_status="failed",
                           parse_error="no final answer line")
    names = [r.name for r in run_checks(item=item, rationale=rat, mode="explain", bounds=ScreenBounds(),
                                        index=FingerprintIndex(), compare_reference=True)]
    assert names == ["parse", "options_addressed", "length", "answer_leakage", "language"]
