"""The status rule (D3) is written once, for a row in Python and for a filter in SQL: both must agree."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.advertisers.models import Advertiser
from app.authorizations.models import Authorization, AuthorizationState

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# Windows that end well before, exactly at, just around, or long after `now`, or have no end.
_ENDS = st.one_of(
    st.none(),
    st.integers(min_value=-(10**6), max_value=10**6).map(lambda seconds: NOW + timedelta(seconds=seconds)),
    st.sampled_from([NOW, NOW - timedelta(microseconds=1), NOW + timedelta(microseconds=1)]),
)
_ROWS = st.lists(st.tuples(st.sampled_from(list(AuthorizationState)), _ENDS), min_size=1, max_size=12)


class TestStatusRule:
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rows=_ROWS, offset=st.integers(min_value=-10, max_value=10))
    async def test_python_and_sql_agree(
        self, db: AsyncEngine, rows: list[tuple[AuthorizationState, datetime | None]], offset: int
    ) -> None:
        now = NOW + timedelta(microseconds=offset)
        async with async_sessionmaker(db)() as session:
            advertiser = Advertiser(
                id=uuid.uuid4(), tiktok_advertiser_id=str(uuid.uuid4().int)[:18], access_token_encrypted=b"x"
            )
            session.add(advertiser)
            for index, (state, end) in enumerate(rows):
                session.add(
                    Authorization(
                        advertiser=advertiser,
                        item_id=str(index),
                        item_type="VIDEO",
                        identity_type="AUTH_CODE",
                        post_status="HESITATE_RECOMMEND",
                        auth_code_encrypted=b"x",
                        auth_code_fingerprint=uuid.uuid4().bytes * 2,
                        state=state.value,
                        auth_end_at=end,
                        unauthorized_at=NOW if state is AuthorizationState.unauthorized else None,
                    )
                )
            await session.flush()
            result = await session.execute(
                select(Authorization, Authorization.status_at(now)).where(Authorization.advertiser_id == advertiser.id)
            )
            statuses = [(row.status_at(now).value, sql_status) for row, sql_status in result.all()]
            await session.rollback()  # nothing is kept: each example starts from an empty table
        assert len(statuses) == len(rows)
        for python_status, sql_status in statuses:
            assert python_status == sql_status
