"""The privacy scan: finds identifiers in what is about to be sent to an LLM endpoint.

    recognizers.py  the rules (pure: record numbers, resident IDs, phones, e-mail, dates, ages, addresses, URLs, IPs)
    scan.py         the adapter: presidio-analyzer with the no-model NLP engine (spaCy NER for names when installed)

The gate that decides what a finding means for an item (hold it, flag it, let it through) is
stages/privacy.py; this package knows nothing of items or the store.
"""
