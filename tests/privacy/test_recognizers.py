"""The rules one by one (privacy/recognizers.py), and the scanner around them (privacy/scan.py): what each
finds, what it validates, and the exam-style forms it must leave alone."""

from __future__ import annotations

import os

import pytest

from clinreason.privacy import recognizers as r
from clinreason.privacy.scan import Finding, get_scanner, mask, ner_model_status, resolve_overlaps


def texts(found, text):
    """The matched pieces in text order (a rule may match one piece by two of its patterns)."""
    return [text[start:end] for start, end in sorted({(m.start, m.end) for m in found})]


def test_resident_id_check_digit_and_birth_date_are_validated():
    assert r.cn_id_check_digit("11010519491231002") == "X"
    assert r.valid_cn_id("11010519491231002X") is None
    assert r.valid_cn_id("110105194912310021") == "the check digit does not match"
    assert r.valid_cn_id("110105194913310028") == "the birth date in it is not a date"
    assert r.valid_cn_id("110105290001010028") == "the birth date in it is out of range"
    # a number with a wrong check digit is no ID ... unless a label says it is one
    assert r.find_cn_resident_ids("编号110105194912310021") == []
    labelled = r.find_cn_resident_ids("身份证号：110105194912310021")
    assert len(labelled) == 1 and labelled[0].score == 0.6 and "check digit" in labelled[0].why
    assert r.find_cn_resident_ids("病人 11010519491231002X 入院")[0].score == 0.95
    assert r.find_cn_resident_ids("a longer number 11010519491231002X7 is not one") == []


def test_record_numbers_need_a_label_and_four_digits():
    text = "MRN: 00456789; 住院号ZY2024001234; case 12; medical records 2010-2012 were reviewed; MRND was done"
    assert texts(r.find_record_numbers(text), text) == ["00456789", "ZY2024001234"]
    assert r.find_record_numbers("the patient's medical record number was checked") == []
    assert r.find_record_numbers("患者MRN12345678") != []  # no word boundary next to Chinese characters


def test_phones_are_checked_against_their_numbering_plan():
    text = "手机13800138000，座机010-12345678，+44 20 7946 0958，(617) 555-0199"
    assert texts(r.find_phone_numbers(text), text) == ["13800138000", "010-12345678", "+44 20 7946 0958",
                                                       "(617) 555-0199"]
    assert r.find_phone_numbers("编号12000000000") == []  # 120… is no mobile prefix
    assert r.find_phone_numbers("WBC 12,000/mm3, platelets 150,000, 100000 IU, NCT01234567") == []
    assert [m.score for m in r.find_phone_numbers("电话：12000000000")] == [0.7]  # labelled: believed anyway


def test_dates_need_day_precision_and_are_weighed_by_their_context():
    def score(text):
        found = r.find_dates(text)
        assert len(found) == 1, found
        return found[0].score

    assert score("admitted on 03/14/2025") == 0.85
    assert score("2025年3月14日入院") == 0.85
    assert score("the scan of 2024-11-02 shows a mass") == 0.6
    assert score("Patients treated between June 1, 2002 and a later date") == 0.2
    assert score("《条例》自2002年9月1日起施行") == 0.2
    assert score("1988年10月15日") == 0.3  # an answer option that is only a date
    assert score("on March 14 the outbreak peaked") == 0.35  # no year
    range_ = r.find_dates("from July 1, 2010 to December 31, 2012")
    assert [m.score for m in range_] == [0.2, 0.2]
    for none in ("in 2015", "2015年3月", "1990s", "pH 7.35-7.45", "HPV 31/33/45", "BP 120/80", "ratio 1/2/3",
                 "version 2.1.3", "13/45/2020", "2019-13-40"):
        assert r.find_dates(none) == [], none


def test_ages_over_89_but_not_of_groups():
    text = "A 92-year-old woman; 男，95岁; aged 91; a 89-year-old man; 年龄93"
    assert texts(r.find_ages_over_89(text), text) == ["92-year-old", "95岁", "aged 91", "年龄93"]
    for cohort in ("aged 90 and older", "90岁以上", "≥90 years old", "60～95岁", "aged 90-95 years",
                   "over 95 years of age", "A 39-year-old man", "男性，58岁"):
        assert r.find_ages_over_89(cohort) == [], cohort


def test_addresses_urls_ips_and_email():
    assert texts(r.find_street_addresses("lives at 221B Baker Street, London"), "lives at 221B Baker Street, London") \
        == ["221B Baker Street"]
    assert r.find_street_addresses("St. John's wort; a Baker's cyst; 3号病房12床; 人民路附近") == []
    assert texts(r.find_urls("see https://example.org/a, or www.example.com."), "see https://example.org/a, or www.example.com.") \
        == ["https://example.org/a", "www.example.com"]
    assert r.find_urls("the pain.it is worse; e.g. a drug") == []
    assert [m.score for m in r.find_ip_addresses("server 10.0.0.5")] == [0.85]
    assert r.find_ip_addresses("EC 3.1.1.11; section 4.2.1.6; 999.1.1.1; 10:30:00") == []
    assert texts(r.find_emails("mail 李a.b@c.cn。"), "mail 李a.b@c.cn。") == ["a.b@c.cn"]


def test_a_finding_keeps_the_shape_of_the_text_not_the_text():
    f = Finding(segment="question", entity_type="PHONE_NUMBER", start=3, end=14, score=0.85, recognizer="phone_number",
                text="13800138000")
    record = f.to_record()
    assert "13800138000" not in str(record)
    assert record["preview"] == mask("13800138000") == "1•••••••••0"
    assert record["digest"] == Finding(segment="other", entity_type="PHONE_NUMBER", start=0, end=13, score=0.6,
                                       recognizer="x", text="138 0013 8000").digest  # spaces do not matter
    assert {k: record[k] for k in ("segment", "type", "start", "end", "score")} == {
        "segment": "question", "type": "PHONE_NUMBER", "start": 3, "end": 14, "score": 0.85}


def test_overlaps_of_one_type_keep_the_best():
    a = Finding("q", "DATE", 0, 10, 0.6, "x", "0123456789")
    b = Finding("q", "DATE", 2, 8, 0.85, "x", "234567")
    c = Finding("q", "STREET_ADDRESS", 0, 10, 0.7, "x", "0123456789")
    assert resolve_overlaps([a, b, c]) == [c, b]


def test_the_scanner_is_presidio_with_the_no_model_engine_and_fetches_nothing():
    scanner = get_scanner()
    assert os.environ.get("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS") == ""
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    assert all(isinstance(engine.nlp_engine, NoOpNlpEngine) for engine in scanner._engines.values())
    found = scanner.scan([("question", "MRN 00456789, SSN 536-90-4399"), ("option A", "A 39-year-old man")],
                         language="en")
    assert [(f.segment, f.entity_type) for f in found] == [("question", "MEDICAL_RECORD_NUMBER"),
                                                            ("question", "US_SSN")]
    assert scanner.scan_text("", language="zh") == [] and scanner.scan_text("男性，58岁", language="fr") == []


def test_a_missing_ner_model_is_skipped_and_said_so():
    assert "is not installed" in (ner_model_status("en_core_web_sm_not_here") or "")
    scanner = get_scanner(ner_models=["en_core_web_sm_not_here"])
    assert scanner.ner == {} and "names are not detected" in scanner.notes[0]
    assert scanner.scan_text("MRN 00456789") != []  # the rest works as before


def test_an_installed_ner_pipeline_finds_names(tmp_path):
    """A spaCy pipeline on disk (here a blank one with an entity ruler: no model can be downloaded in CI)
    is used for names in its language, through presidio's spaCy engine; the rules keep working beside it."""
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": [{"LOWER": "jane"}, {"LOWER": "doe"}]}])
    nlp.to_disk(tmp_path / "names_en")
    scanner = get_scanner(ner_models=[str(tmp_path / "names_en")])
    assert scanner.ner == {"en": str(tmp_path / "names_en")} and scanner.notes == []
    found = scanner.scan_text("Jane Doe, MRN 00456789, was seen.", language="en")
    assert [(f.entity_type, f.text) for f in found] == [("PERSON", "Jane Doe"), ("MEDICAL_RECORD_NUMBER", "00456789")]
    assert scanner.scan_text("患者张伟，住院号20250314001", language="zh")[0].entity_type == "MEDICAL_RECORD_NUMBER"
