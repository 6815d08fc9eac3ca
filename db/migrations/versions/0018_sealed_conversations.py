"""Conversation messages sealed at rest (issue 13): a question, an answer and its SQL can quote event values.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30

``sealed`` holds a message's ``content`` and ``sql`` AES-GCM encrypted with the tenant's data key
(``app.chat.sealing``), bound to the tenant, the conversation, the message id and its role; ``content`` and
``sql`` stay null on such rows. Rows written before this revision keep their clear ``content``/``sql`` and
are still read as they are. Destroying the tenant's data keys leaves sealed messages unreadable, like events.

The downgrade cannot put the clear text back without the keys: it deletes the sealed messages.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE conversation_messages ADD COLUMN sealed bytea;
ALTER TABLE conversation_messages ALTER COLUMN content DROP NOT NULL;
ALTER TABLE conversation_messages ADD CONSTRAINT conversation_messages_clear_or_sealed
  CHECK ((sealed IS NULL) = (content IS NOT NULL) AND (sealed IS NULL OR sql IS NULL));
"""

DOWNGRADE = r"""
DELETE FROM conversation_messages WHERE sealed IS NOT NULL;
ALTER TABLE conversation_messages DROP CONSTRAINT conversation_messages_clear_or_sealed;
ALTER TABLE conversation_messages ALTER COLUMN content SET NOT NULL;
ALTER TABLE conversation_messages DROP COLUMN sealed;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
