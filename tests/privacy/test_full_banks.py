"""The false-hold rate on the real banks in ../shared/data (skipped where that folder is absent; CI has it)
and on the bundled samples: exam questions are about invented patients, so whatever the gate would hold
is a false hold. Target: at most 1 % of a bank's items, as drafting sends them and with the banks' own
explanations too (`use_reference_explanation`); none of the samples. The benchmark prints the same
figures with every held item: python benchmarks/bench_privacy.py --list [--reference]"""

from __future__ import annotations

import pytest

from clinreason.demo import samples_dir
from clinreason.stages import privacy

BANKS = {"medqa": 1273, "medmcqa": 4183, "pubmedqa": 1000, "mmlu_medical": 1493, "cmexam": 6811}
TARGET = 0.01


def rates(path, **kw) -> tuple[int, int, int, list]:
    """(items, held as drafting sends them, held with the explanation too, what was held and why)."""
    report = privacy.dry_run(privacy.bank_requests(path, include_reference=True, **kw), privacy.get_scanner())
    without_reference = [h for h in report["held"]
                         if any(f["segment"] != "reference explanation" for f in h["findings"])]
    why = [(h["item"], [(f["type"], f["text"]) for f in h["found"]]) for h in report["held"]]
    return report["items"], len(without_reference), report["would_hold"], why


@pytest.mark.fullbank
@pytest.mark.parametrize("bank", sorted(BANKS))
def test_false_holds_stay_under_one_percent(bank, shared_data, capsys):
    items, held, held_with_reference, why = rates(shared_data / bank)
    with capsys.disabled():
        print(f"\n{bank}: {held}/{items} held as drafted ({held / items:.2%}), {held_with_reference} with the "
              f"explanation ({held_with_reference / items:.2%}); target {TARGET:.0%}: {why}")
    assert items == BANKS[bank]
    assert held / items <= TARGET and held_with_reference / items <= TARGET, why


def test_no_bundled_sample_is_held():
    items, held, held_with_reference, why = rates(samples_dir(), split="all")
    assert items >= 20 and held == held_with_reference == 0, why
