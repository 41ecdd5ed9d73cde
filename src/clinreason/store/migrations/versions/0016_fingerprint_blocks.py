"""Fingerprint block indexes (issue 16): an expert's edit is screened for near-duplicates in the review's
transaction, and that check read the latest fingerprint of every item of the project (one query over every
version: 17% of a server process's CPU in the closed loop at 20k items, and growing with the project). Two
64-bit fingerprints within 3 bits agree exactly on one of their four 16-bit blocks, so an index on each
block finds the only items worth comparing:

- `ix_rationales_fingerprint_block_0` on `fingerprint & 65535`
- `ix_rationales_fingerprint_block_1` on `(fingerprint >> 16) & 65535`
- `ix_rationales_fingerprint_block_2` on `(fingerprint >> 32) & 65535`
- `ix_rationales_fingerprint_block_3` on `(fingerprint >> 48) & 65535`

(`>>` is an arithmetic shift on the signed BIGINT in SQLite and PostgreSQL alike, so each block is the same
16 bits as `domain.checks.fingerprint_blocks` takes from the unsigned value.)

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _expression(i: int) -> str:
    # in parentheses of its own: PostgreSQL indexes an expression only so (SQLite takes it either way)
    return f"((fingerprint >> {16 * i}) & 65535)" if i else "(fingerprint & 65535)"


def upgrade() -> None:
    for i in range(4):
        op.create_index(f"ix_rationales_fingerprint_block_{i}", "rationales", [sa.text(_expression(i))])


def downgrade() -> None:
    for i in range(4):
        op.drop_index(f"ix_rationales_fingerprint_block_{i}", table_name="rationales")
