"""The identifiers presidio's predefined recognizers miss (or over-match in exam text), as plain rules.

Each rule is a pure function of a text: `find(text) -> [Match]`, with a score and a reason a person can
read. scan.py wraps them as presidio recognizers; nothing here imports presidio, so the rules are
tested on their own and cost nothing to import.

Scores follow one scale: >= 0.85 validated (a check digit, a phone number plan, a label in front of it),
0.6-0.8 a well-formed identifier without corroboration, <= 0.4 a form that exam questions use for
other things (a date that ends a study period, a date a regulation took effect, a bare month and day).
The gate's `[privacy] min_score` (default 0.5) is the line between the two last groups.

Exam text is the main customer: "A 39-year-old man", "男性，58岁", 500 mg, 120/80 mmHg, 3.5-5.0 mmol/L,
"in 2015", "1988年" must find nothing, which is why years alone, month-precision dates, ages up to 89,
numbers without a label and decimals are never identifiers here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

# --- entity types (presidio's names where presidio has one) -----------------------------------------
MEDICAL_RECORD_NUMBER = "MEDICAL_RECORD_NUMBER"
CN_RESIDENT_ID = "CN_RESIDENT_ID"
PHONE_NUMBER = "PHONE_NUMBER"
EMAIL_ADDRESS = "EMAIL_ADDRESS"
DATE = "DATE"  # day precision only
AGE_OVER_89 = "AGE_OVER_89"
STREET_ADDRESS = "STREET_ADDRESS"
URL = "URL"
IP_ADDRESS = "IP_ADDRESS"
US_SSN = "US_SSN"  # presidio's own recognizer
PERSON = "PERSON"  # only with an NER model

#: the identifiers with a structure a rule can find (the recall test holds these at 1.0)
STRUCTURED_ENTITIES = (MEDICAL_RECORD_NUMBER, CN_RESIDENT_ID, PHONE_NUMBER, EMAIL_ADDRESS, DATE, AGE_OVER_89,
                       STREET_ADDRESS, URL, IP_ADDRESS)


@dataclass(frozen=True, slots=True)
class Match:
    start: int
    end: int
    score: float
    why: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One recognizer: its name, the entity it finds, and the pure function that finds it."""

    name: str
    entity: str
    find: Callable[[str], list[Match]]


#: word boundaries for Latin text that also hold next to Chinese characters (which `\b` treats as letters)
_B = r"(?<![A-Za-z])"
_E = r"(?![A-Za-z])"


def _window(text: str, start: int, end: int, before: int, after: int) -> tuple[str, str]:
    return text[max(0, start - before):start], text[end:end + after]


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


# --- medical record / admission / case numbers ------------------------------------------------------

_MRN_LABEL_EN = (
    rf"{_B}MRN{_E}|{_B}M\.R\.N\.?|{_B}UHID{_E}|{_B}CR\s?No\.?"
    rf"|{_B}medical[\s-]records?(?:\s(?:number|no\.?|num\.?|#|id))?"
    rf"|{_B}med(?:ical)?\.?\s?rec(?:ord)?\.?\s?(?:no\.?|#|number)"
    rf"|{_B}(?:hospital|hosp\.?|patient|pt\.?|admission|adm\.?|case|chart|record|inpatient|in-patient|outpatient"
    r"|out-patient|IP|OP|registration|reg\.?|encounter|accession|visit|account|health\s(?:record|card)"
    r"|insurance|member|specimen|pathology|biopsy|lab|laboratory|radiology|imaging)"
    r"\s?(?:number|no\.?|num\.?|#|id(?:entifier)?|code)"
)
_MRN_LABEL_ZH = (
    r"住院号|住院病历号|住院病案号|住院编号|病案号|病案编号|病历号|病历编号|门诊号|门诊病历号|急诊号|就诊号|就诊卡号|诊疗卡号"
    r"|医保卡号|医保号|社保卡号|社保号|登记号|挂号号|病人ID|患者ID|病人编号|患者编号|病理号|影像号|检查号|标本号|放射号|床位号"
)
_MRN_VALUE = r"(?P<value>[A-Za-z]{0,4}[-/]?\d[\dA-Za-z/-]{2,24})"
_MRN = re.compile(
    rf"(?P<label>{_MRN_LABEL_EN}|{_MRN_LABEL_ZH})\s*(?:(?:is|was|of|为|是)\s*)?[:#：=]?\s*(?:No\.?\s*)?[:#：]?\s*"
    rf"{_MRN_VALUE}(?![\dA-Za-z])", re.IGNORECASE)
_YEARS = re.compile(r"(?:19|20)\d{2}(?:\s*[-/–]\s*(?:19|20)?\d{2})?")


def find_record_numbers(text: str) -> list[Match]:
    """A number (at least four digits) right after a label that names a record: MRN, medical record
    number, admission / case / chart no., 住院号, 病案号, 门诊号 ... Unlabelled numbers are never taken."""
    out = []
    for m in _MRN.finditer(text):
        value = m.group("value").rstrip("-/")
        if len(_digits(value)) < 4 or _YEARS.fullmatch(value):
            continue  # "case 12", or "medical records 2010-2012 were reviewed"
        start = m.start("value")
        out.append(Match(start, start + len(value), 0.9, f"labelled as a record number ({m.group('label').strip()})"))
    return out


# --- Chinese resident identity card number ----------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_CN_ID = re.compile(r"(?<![\dA-Za-z])([1-8]\d{5})\s?((?:18|19|20)\d{2}[01]\d[0-3]\d)\s?(\d{3}[\dXx])(?![\dA-Za-z])")
_CN_ID_OLD = re.compile(r"(?<![\dA-Za-z])([1-8]\d{5}\d{2}[01]\d[0-3]\d\d{3})(?![\dA-Za-z])")
_ID_LABEL = re.compile(r"(身份证|身份证号|身份证号码|公民身份号码|居民身份证|证件号|ID\s?card|identity\s?card|national\s?ID|resident\s?ID)"
                       r"[^\n]{0,8}$", re.IGNORECASE)


def cn_id_check_digit(first17: str) -> str:
    """The GB 11643-1999 check character (ISO 7064 MOD 11-2) of the first 17 digits."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def valid_cn_id(number: str) -> str | None:
    """None when `number` is a valid 18-character resident ID, else why not."""
    number = number.replace(" ", "").upper()
    if not re.fullmatch(r"[1-8]\d{16}[\dX]", number):
        return "not 17 digits and a check character"
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return "the birth date in it is not a date"
    if not date(1880, 1, 1) <= born <= date.today():
        return "the birth date in it is out of range"
    if cn_id_check_digit(number[:17]) != number[17]:
        return "the check digit does not match"
    return None


def find_cn_resident_ids(text: str) -> list[Match]:
    """18-character resident IDs whose birth date and check digit are valid; one that fails the check
    only when a label (身份证号 ...) names it; the old 15-digit form only with a label."""
    out = []
    for m in _CN_ID.finditer(text):
        problem = valid_cn_id(m.group(0))
        labelled = bool(_ID_LABEL.search(text[max(0, m.start() - 20):m.start()]))
        if problem is None:
            out.append(Match(m.start(), m.end(), 1.0 if labelled else 0.95, "resident ID: birth date and check digit valid"))
        elif labelled:
            out.append(Match(m.start(), m.end(), 0.6, f"labelled as an ID number, although {problem}"))
    for m in _CN_ID_OLD.finditer(text):
        if _ID_LABEL.search(text[max(0, m.start() - 20):m.start()]):
            out.append(Match(m.start(), m.end(), 0.7, "labelled 15-digit (pre-1999) resident ID"))
    return out


# --- phone numbers ------------------------------------------------------------------------------------

_PHONE_LABEL = re.compile(r"(phone|tel\b|tel\.|telephone|mobile|cell|fax|call|contact|电话|手机|联系|传真|热线|号码|致电|拨打)"
                          r"[^\n]{0,12}$", re.IGNORECASE)
_CN_MOBILE = re.compile(r"(?<![\d.,])(?:(?:\+|00)?86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?![\d])")
_CN_LANDLINE = re.compile(r"(?<![\d.,])(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3}[\s-])\s?[2-9]\d{6,7}(?:[-转]\d{1,5})?(?![\d])")
_INTERNATIONAL = re.compile(r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,5}(?:[\s.-]?\d{1,5}){1,4}(?!\d)")
_NANP = re.compile(r"(?<![\d-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\d-]|\.\d)")
_LABELLED_PHONE = re.compile(
    r"(?:phone|tel\.?|telephone|mobile|cell(?:phone)?|fax|电话|手机|手机号|联系电话|联系方式|传真|座机)\s*(?:number|no\.?|号码|号)?\s*"
    r"(?:is|为|是)?\s*[:：]?\s*(?P<value>\+?[\d(（][\d()（）\s.-]{5,18}\d)", re.IGNORECASE)


def _phonenumbers():
    import phonenumbers  # comes with presidio-analyzer; imported when a text has a candidate

    return phonenumbers


def _plan_check(candidate: str, region: str | None) -> str:
    """'valid', 'possible' or 'no' for a candidate under the phone numbering plan of `region`."""
    pn = _phonenumbers()
    try:
        number = pn.parse(candidate, region)
    except pn.NumberParseException:
        return "no"
    if pn.is_valid_number(number):
        return "valid"
    return "possible" if pn.is_possible_number(number) else "no"


def find_phone_numbers(text: str) -> list[Match]:
    """Mainland mobiles (1[3-9]x xxxx xxxx) and landlines (0xx-xxxxxxxx), international numbers (+cc ...),
    North-American (xxx) xxx-xxxx, each checked against its numbering plan (python-phonenumbers); and any
    run of 7-15 digits right after a phone label (电话, Tel, mobile ...)."""
    out = []
    for m in _CN_MOBILE.finditer(text):
        labelled = bool(_PHONE_LABEL.search(text[max(0, m.start() - 16):m.start()]))
        check = _plan_check(_digits(m.group(0))[-11:], "CN")
        if check == "valid":
            out.append(Match(m.start(), m.end(), 0.85, "mainland mobile number (valid under the CN numbering plan)"))
        elif labelled:
            out.append(Match(m.start(), m.end(), 0.6, "labelled mobile number"))
    for m in _CN_LANDLINE.finditer(text):
        if _plan_check(re.sub(r"[-转].{1,5}$", "", m.group(0)) if "转" in m.group(0) else m.group(0), "CN") != "no":
            out.append(Match(m.start(), m.end(), 0.75, "mainland landline number (area code and number)"))
    for m in _INTERNATIONAL.finditer(text):
        candidate = "+" + m.group(0)[2:] if m.group(0).startswith("00") else m.group(0)
        check = _plan_check(candidate, None)
        if check != "no":
            out.append(Match(m.start(), m.end(), 0.85 if check == "valid" else 0.6,
                             f"international number ({check} under its country's numbering plan)"))
    for m in _NANP.finditer(text):
        check = _plan_check(m.group(0), "US")
        out.append(Match(m.start(), m.end(), 0.85 if check == "valid" else 0.55,
                         "North-American number" + (" (valid)" if check == "valid" else " (well formed)")))
    for m in _LABELLED_PHONE.finditer(text):
        value = m.group("value").rstrip(" .-")
        if 7 <= len(_digits(value)) <= 15:
            start = m.start("value")
            out.append(Match(start, start + len(value), 0.7, "a number right after a phone label"))
    return out


# --- e-mail, URL, IP --------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,24}(?![A-Za-z0-9-])")


def find_emails(text: str) -> list[Match]:
    return [Match(m.start(), m.end(), 0.9, "e-mail address") for m in _EMAIL.finditer(text)]


_URL_TAIL = r"[^\s<>\"'，。；、）)\]]*"
_URL_SCHEME = re.compile(rf"(?<![A-Za-z0-9])(?:https?|ftp)://{_URL_TAIL}", re.IGNORECASE)
_URL_WWW = re.compile(rf"(?<![A-Za-z0-9.])www\d{{0,3}}\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+{_URL_TAIL}", re.IGNORECASE)
#: bare host names only under top-level domains that are not also English or pinyin words ("pain.it")
_URL_BARE = re.compile(rf"(?<![A-Za-z0-9_@./-])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:com|org|net|gov|edu|cn)"
                       rf"(?:\.[a-z]{{2}})?(?![A-Za-z0-9_-])(?:/{_URL_TAIL})?")


def find_urls(text: str) -> list[Match]:
    out = [Match(m.start(), m.end(), 0.9, "URL with a scheme") for m in _URL_SCHEME.finditer(text)
           if len(m.group(0)) > len(m.group(0).split("://")[0]) + 4]
    out += [Match(m.start(), m.end(), 0.8, "www address") for m in _URL_WWW.finditer(text)]
    out += [Match(m.start(), m.end(), 0.6, "host name") for m in _URL_BARE.finditer(text)
            if len(m.group(0).split(".")[0]) >= 2]
    trimmed = []
    for m in out:
        end = m.end
        while end > m.start and text[end - 1] in ".,:;!?-":
            end -= 1
        trimmed.append(Match(m.start, end, m.score, m.why))
    return trimmed


_IPV4 = re.compile(r"(?<![A-Za-z0-9.])(?:\d{1,3}\.){3}\d{1,3}(?![A-Za-z0-9]|\.\d)")
_IPV6 = re.compile(r"(?<![A-Za-z0-9:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[A-Za-z0-9]+)?(?![A-Za-z0-9:])")
_NOT_IP_BEFORE = re.compile(r"(?:\bEC|\bE\.C\.|\bversion|\bver\.?|\bv|\bICD(?:-\d+)?|\bsection|§|\bchapter|\btable"
                            r"|\bfigure|\bfig\.?|\bstep|\brule|\bclause|\bart\.?|第)\s*$", re.IGNORECASE)
_IP_CONTEXT = re.compile(r"\b(ip|address|server|host|router|logged|login|network)\b|地址|服务器|登录", re.IGNORECASE)


def find_ip_addresses(text: str) -> list[Match]:
    """IPv4 and IPv6 addresses (validated), except enzyme numbers (EC 3.1.1.11) and section numbers."""
    out = []
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group(0))
        except ValueError:
            continue
        before = text[max(0, m.start() - 12):m.start()]
        if _NOT_IP_BEFORE.search(before):
            continue
        near = _IP_CONTEXT.search(text[max(0, m.start() - 40):m.start()])
        out.append(Match(m.start(), m.end(), 0.85 if near else 0.6, "IPv4 address"))
    for m in _IPV6.finditer(text):
        value = m.group(0)
        if value.count(":") < 2 or len(value.replace(":", "")) < 4:
            continue
        try:
            ipaddress.IPv6Address(value.split("%")[0])
        except ValueError:
            continue
        out.append(Match(m.start(), m.end(), 0.7, "IPv6 address"))
    return out


# --- exact dates (day precision) ------------------------------------------------------------------------

_MONTHS = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
           "nov": 11, "dec": 12}
_MONTH = (r"(?P<month>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
          r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_ZH_NUM = "〇零一二三四五六七八九十"
_DATE_PATTERNS: list[tuple[str, re.Pattern[str], float]] = [
    # 03/14/2025, 14.03.2025, 3-14-2025 (one separator used twice; month and day valid either way round)
    ("numeric", re.compile(r"(?<![\d/.])(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<year>(?:18|19|20)\d{2})"
                           r"(?![\d/]|\.\d)"), 0.6),
    # 03/14/25 (two-digit year: slashes and two-digit fields only)
    ("numeric-short", re.compile(r"(?<![\d/.])(?P<a>\d{2})/(?P<b>\d{2})/(?P<year>\d{2})(?![\d/]|\.\d)"), 0.5),
    # 2025-03-14, 2025/3/14, 2025.03.14
    ("iso", re.compile(r"(?<![\d/.-])(?P<year>(?:18|19|20)\d{2})(?P<sep>[-/.])(?P<a>\d{1,2})(?P=sep)(?P<b>\d{1,2})"
                       r"(?![\d]|[-/.]\d)"), 0.6),
    # March 14, 2025 / Mar. 14th 2025
    ("month-day-year", re.compile(rf"{_B}{_MONTH}\.?\s+(?P<b>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year>(?:18|19|20)\d{{2}})(?!\d)"),
     0.6),
    # 14 March 2025 / 14th of March, 2025
    ("day-month-year", re.compile(rf"(?<!\d)(?P<b>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\.?,?\s+(?P<year>(?:18|19|20)\d{{2}})(?!\d)"),
     0.6),
    # 2025年3月14日 / 二〇二五年三月十四日
    ("zh", re.compile(rf"(?P<year>(?:18|19|20)\d{{2}}|[{_ZH_NUM}]{{4}})\s*年\s*(?P<a>\d{{1,2}}|[{_ZH_NUM}]{{1,3}})\s*月\s*"
                      rf"(?P<b>\d{{1,2}}|[{_ZH_NUM}]{{1,3}})\s*[日号](?!\d)"), 0.6),
    # March 14 / 14 March / 3月14日: a date without its year
    ("month-day", re.compile(rf"{_B}{_MONTH}\.?\s+(?P<b>\d{{1,2}})(?:st|nd|rd|th)?\b(?!,?\s*(?:18|19|20)\d{{2}})(?!\s*(?:mg|kg|ml|%|years?|days?|weeks?|hours?))"),
     0.35),
    ("day-month", re.compile(rf"(?<!\d)(?P<b>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b(?!\.?,?\s+(?:18|19|20)\d{{2}})"), 0.35),
    ("zh-month-day", re.compile(r"(?<![\d年])(?P<a>\d{1,2})\s*月\s*(?P<b>\d{1,2})\s*[日号](?!\d)"), 0.35),
]
#: what makes a date about a person, said before it: an admission, a birth, a visit, an operation ...
_PERSONAL_BEFORE = re.compile(
    r"\b(?:admitted|admission|discharged?|born|birth|DOB|d\.o\.b\.?|visit(?:ed)?|seen|presented|attended|operated"
    r"|surgery|procedure|appointment|follow-up|died|death|deceased|referred|examined|scanned|biopsied|injured"
    r"|accident|delivered|date of|last menstrual period|LMP)\b"
    r"|入院|出院|住院|就诊|门诊|复诊|急诊|出生|生日|手术|死亡|转入|转出|检查|化验|确诊|送检|发病|受伤|分娩|末次月经|来院|来诊",
    re.IGNORECASE)
#: ... or said right after it ("2025年3月14日入院", "3/14/2025, the patient was admitted")
_PERSONAL_AFTER = re.compile(
    r"\s*(?:起|开始|前后|左右)?\s*[，,]?\s*(?:患者|病人|该患者)?\s*(?:出现|自觉|感到|发现|起病|发病|入院|出院|住院|就诊|门诊|复诊"
    r"|急诊|出生|手术|死亡|转入|转出|检查|化验|确诊|送检|受伤|分娩|来院|来诊)"
    r"|\s*,?\s*(?:the patient|he|she|patient|they)?\s*(?:was|were)?\s*(?:admitted|discharged|born|seen|operated|presented"
    r"|died|referred|examined|delivered)\b",
    re.IGNORECASE)
#: a personal word followed by one of these is a study period ("patients undergoing surgery from ...")
_PERIOD = re.compile(r"\b(?:from|between|since|during|period|beginning|starting|commencing|as of|as on|until|till|"
                     r"through|cohort)\b|自|从|期间|截至|截止", re.IGNORECASE)
#: what makes it about something else: a regulation that took effect, a publication, a study period,
#: a product's expiry, a statistic's reference date
_PUBLIC = re.compile(
    r"\b(?:published|publication|issued|enacted|approved|approval|promulgated|effective|came into|adopted|revised"
    r"|amended|updated?|announced|released|declared|signed|ratified|launched|founded|established|conference"
    r"|congress|summit|assembly|journal|vol\.?|volume|accessed|retrieved|FDA|WHO|CDC|ministry|government|act|law"
    r"|regulation|guideline|founded|anniversary|independence|since|between|from|until|till|through|during|period|beginning|starting|as on|as of"
    r"|expir(?:y|es|ed|ation)|valid until|use by|best before|manufactured)\b"
    r"|发布|颁布|公布|施行|实施|通过|修订|修正|印发|批准|召开|会议|生效|颁发|起|以来|期间|成立|建立|创立|纪念|宣布|世界卫生组织|国务院|卫生部|卫计委|卫健委|人大|条例|办法|法|规定"
    r"|杂志|期刊|截至|截止|自|从|有效期|失效期|生产日期|批号",
    re.IGNORECASE)
_CLAUSE_END = re.compile(r"[。；;!?！？\n]|\.\s")
_RANGE_JOIN = re.compile(r"\s*,?\s*(?:-|–|—|~|～|－|to|until|till|through|thru|and|or|至|到|、|及|和)\s*", re.IGNORECASE)


def _zh_number(value: str) -> int:
    if value.isdigit():
        return int(value)
    digits = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0}
    if "十" in value:
        tens, _, ones = value.partition("十")
        return (digits.get(tens, 1) if tens else 1) * 10 + (digits.get(ones, 0) if ones else 0)
    return int("".join(str(digits.get(c, 0)) for c in value))


_AMBIGUOUS = {"numeric", "numeric-short"}  # 03/04/2025: March 4 or 3 April, either will do


def _valid_day(kind: str, m: re.Match[str]) -> bool:
    groups = m.groupdict()
    try:
        day = _zh_number(groups["b"])
        if groups.get("month"):
            pairs = [(_MONTHS[groups["month"][:3].lower()], day)]
        else:
            first = _zh_number(groups["a"])
            pairs = [(first, day), (day, first)] if kind in _AMBIGUOUS else [(first, day)]
        year = groups.get("year")
        y = 2000 if not year else _zh_number(year) if not year.isdigit() else int(year)
        if year and year.isdigit() and len(year) == 2:
            y += 2000
    except (KeyError, ValueError):
        return False
    for month, d in pairs:
        try:
            date(y, month, d)
            return True
        except ValueError:
            continue
    return False


def _whole_segment(text: str, start: int, end: int) -> bool:
    """The date is all the text says (an answer option such as '1988年10月15日')."""
    return not re.sub(r"[\s.,;:()（）。，；：、]", "", text[:start] + text[end:])


def find_dates(text: str) -> list[Match]:
    """Day-precision dates in numeric, English and Chinese forms. A date about a person (admitted,
    born, 入院, 出生 ... nearby) scores 0.85; one that is the end of a range, a regulation's or a
    publication's date (between ... and, from ... to, 发布, 施行, 自 ... 起, published) scores 0.2, and an
    answer option that is only a date 0.3 (exam questions ask when a law was issued); a bare
    month and day scores 0.35 unless it is about a person. Years and months alone are never dates here."""
    found: list[tuple[int, int, float, str]] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern, base in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            if any(s < m.end() and m.start() < e for s, e in taken) or not _valid_day(kind, m):
                continue
            taken.append((m.start(), m.end()))
            found.append((m.start(), m.end(), base, kind))
    found.sort()
    in_range: set[int] = set()
    for i, (start, end, _b, _k) in enumerate(found):
        after = text[end:end + 12]
        join = _RANGE_JOIN.match(after)
        if join and (i + 1 < len(found) and found[i + 1][0] == end + join.end() or re.match(r"\d", after[join.end():])):
            in_range.add(i)
            if i + 1 < len(found) and found[i + 1][0] == end + join.end():
                in_range.add(i + 1)
    out = []
    for i, (start, end, base, kind) in enumerate(found):
        before, after = _window(text, start, end, 50, 16)
        clause = _CLAUSE_END.split(before)[-1]
        said_before = list(_PERSONAL_BEFORE.finditer(clause))
        personal = next((p.group(0) for p in said_before[-1:] if not _PERIOD.search(clause[p.end():])), None)
        if personal is None and (said_after := _PERSONAL_AFTER.match(after)):
            personal = said_after.group(0).strip(" ，,")
        if personal:
            score, why = 0.85, f"exact date ({kind}) about a person ({personal})"
        elif i in in_range or _PUBLIC.search(before) or _PUBLIC.search(after):
            score, why = 0.2, f"exact date ({kind}) of a period, regulation or publication"
        elif _whole_segment(text, start, end):
            score, why = 0.3, f"exact date ({kind}) that is a whole answer option"
        else:
            score, why = base, f"exact date ({kind})"
        out.append(Match(start, end, score, why))
    return out


# --- ages over 89 ----------------------------------------------------------------------------------------

_AGE = r"(?P<age>9\d|1[0-2]\d)"
_AGE_PATTERNS = [
    re.compile(rf"(?<![\d.,]){_AGE}\s*(?:-|\s)?\s*(?:years?|yrs?|y)\s*(?:-|\s)?\s*old\b", re.IGNORECASE),
    re.compile(rf"(?<![\d.,]){_AGE}\s*[-\s]?(?:y/o|yo|y\.o\.|yr\.?\s?old)(?![\w])", re.IGNORECASE),
    re.compile(rf"{_B}(?:aged?|age:|age\s+of)\s*{_AGE}(?:\s*(?:years?|yrs?))?(?![\d.])", re.IGNORECASE),
    re.compile(rf"(?<![\d.,]){_AGE}\s*(?:岁|周岁)"),
    re.compile(rf"(?:年龄|年纪|享年)\s*[:：为是]?\s*{_AGE}(?![\d.])"),
]
_COHORT_AFTER = re.compile(r"\s*(?:\+|(?:years?\s+)?(?:of\s+age\s+)?(?:and|or)\s+(?:older|over|above|more)"
                           r"|以上|及以上|或以上|以后|之后|后|左右|(?:-|–|~|～|至|到|to|and|or)\s*\d)", re.IGNORECASE)
_COHORT_BEFORE = re.compile(r"(?:≥|>|⩾|over|above|beyond|older than|at least|exceeding|超过|大于|高于|年满|\d\s*(?:-|–|~|～|至|到|to)\s*)$",
                            re.IGNORECASE)


def find_ages_over_89(text: str) -> list[Match]:
    """A person's age of 90 or more ("a 92-year-old woman", "95岁", "aged 91"): HIPAA counts it as an
    identifier. Ages of groups ("aged 90 and older", "90岁以上", "≥ 90 years", "60～95岁") are not."""
    out: list[Match] = []
    taken: list[tuple[int, int]] = []
    for pattern in _AGE_PATTERNS:
        for m in pattern.finditer(text):
            if any(s < m.end() and m.start() < e for s, e in taken):
                continue
            if _COHORT_AFTER.match(text[m.end():m.end() + 24]) or _COHORT_BEFORE.search(text[max(0, m.start() - 14):m.start()]):
                continue
            taken.append((m.start(), m.end()))
            out.append(Match(m.start(), m.end(), 0.7, f"age over 89 ({m.group('age')})"))
    return out


# --- street addresses ---------------------------------------------------------------------------------------

_STREET_EN = re.compile(
    r"(?<![\w.])\d{1,6}[A-Za-z]?\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-z]+|\d{1,3}(?:st|nd|rd|th))(?:\s+[A-Z][a-z]+){0,3}\s+"
    r"(?:(?:Street|Avenue|Road|Boulevard|Lane|Drive|Court|Way|Place|Terrace|Parkway|Highway|Circle|Square|Crescent"
    r"|Close|Row|Alley)\b|(?:St|Ave|Rd|Blvd|Ln|Dr|Ct|Pl|Ter|Pkwy|Hwy|Cir|Sq)\b\.?)"
    r"(?:,?\s*(?:Apt|Apartment|Suite|Ste|Unit|Flat|#)\.?\s*[\dA-Z-]+)?")
_PO_BOX = re.compile(r"\bP\.?\s?O\.?\s?Box\s+\d{1,6}\b", re.IGNORECASE)
_STREET_ZH = re.compile(
    r"[\u4e00-\u9fff]{1,12}?(?:路|街|大街|大道|巷|胡同|弄|里|村|组|社区|小区|花园|公寓|大厦)\s*\d{1,5}\s*(?:号|弄|栋|幢|巷)"
    r"(?:\s*(?:\d{1,4}|[A-Z一二三四五六七八九十])\s*(?:号楼|栋|幢|座|单元|楼|层|室|号|户))*")
_BUILDING_ZH = re.compile(r"(?<!\d)\d{1,4}\s*(?:号楼|栋|幢)\s*(?:\d{1,2}\s*单元\s*)?\d{2,5}\s*(?:室|号|户)")
_ADDRESS_LABEL = re.compile(r"(?:\baddress(?:ed)?\s*(?:is|:)|\blives at|\bresides at|\bresiding at|住址|家庭住址|现住址|户籍地址|居住地址|地址)"
                            r"\s*[:：为是]?\s*(?P<value>[^\n,;，。；]{4,60})", re.IGNORECASE)


def find_street_addresses(text: str) -> list[Match]:
    """A house number with a street ("221B Baker Street", "12 Oak Ave., Apt 4"), a P.O. box, a Chinese
    street address with its number (人民路123号, 3号楼2单元401室), or what follows an address label."""
    out = [Match(m.start(), m.end(), 0.75, "house number and street") for m in _STREET_EN.finditer(text)]
    out += [Match(m.start(), m.end(), 0.7, "post-office box") for m in _PO_BOX.finditer(text)]
    out += [Match(m.start(), m.end(), 0.75, "street and number") for m in _STREET_ZH.finditer(text)]
    out += [Match(m.start(), m.end(), 0.7, "building and flat number") for m in _BUILDING_ZH.finditer(text)]
    for m in _ADDRESS_LABEL.finditer(text):
        value = m.group("value").rstrip(" .:!?")
        if _IPV4.fullmatch(value) or _IPV6.fullmatch(value):
            continue  # "the monitor's address is 10.0.0.5": an IP address, found as one
        if re.search(r"\d", value) or re.search(r"[省市区县镇乡村路街]", value):
            out.append(Match(m.start("value"), m.start("value") + len(value), 0.8, "what follows an address label"))
    return out


#: every rule, in the order findings are reported
RULES: tuple[Rule, ...] = (
    Rule("record_number", MEDICAL_RECORD_NUMBER, find_record_numbers),
    Rule("cn_resident_id", CN_RESIDENT_ID, find_cn_resident_ids),
    Rule("phone_number", PHONE_NUMBER, find_phone_numbers),
    Rule("email", EMAIL_ADDRESS, find_emails),
    Rule("exact_date", DATE, find_dates),
    Rule("age_over_89", AGE_OVER_89, find_ages_over_89),
    Rule("street_address", STREET_ADDRESS, find_street_addresses),
    Rule("url", URL, find_urls),
    Rule("ip_address", IP_ADDRESS, find_ip_addresses),
)


def run_rules(text: str) -> Iterator[tuple[Rule, Match]]:
    """Every rule's matches in `text` (overlaps not yet resolved: scan.py does that)."""
    for rule in RULES:
        for match in rule.find(text):
            yield rule, match
