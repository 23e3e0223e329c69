"""Every signal kind, read back through `SignalPlan.values` after events go through the resolver
and the scorer."""

from __future__ import annotations

import pytest

from tests.unit.scoring.util import DAY, HOUR, T0, Harness, group, identify, track

MODEL = """
name: kinds
version: 1
signals:
  msgs:       {count: "Message Sent", window: 30d}
  msgs_life:  {count: "Message Sent"}
  two_kinds:  {count: ["Message Sent", "Reply Sent"], window: 30d}
  big:        {count: "Meeting Hosted", where: "participants >= 5", window: 30d}
  finance_big: {count: "Meeting Hosted", where: "participants >= 5 and room == 'finance'"}
  storage:    {sum: "File Uploaded", property: size_mb, window: 90d, bucket: 1d}
  storage_life: {sum: "File Uploaded", property: size_mb}
  seats:      {distinct_users: any, window: 7d}
  writers:    {distinct_users: "Message Sent"}
  days:       {active_days: any, window: 14d}
  days_life:  {active_days: "Message Sent"}
  onboarded:  {ever: "Onboarding Completed"}
  onboarded_fast: {ever: "Onboarding Completed", where: "minutes < 10"}
  employees:  {trait: employees}
  industry:   {trait: industry}
  vps:        {users_with_trait: title, in: ["VP Sales", "CTO"]}
  titled:     {users_with_trait: title}
qualify:
  when: "msgs >= 1000"
"""


@pytest.fixture
def h() -> Harness:
    return Harness(MODEL)


def test_count_windowed_and_lifetime_and_event_lists(h: Harness) -> None:
    for i in range(3):
        h.send(track("Message Sent", T0 + i * HOUR))
    h.send(track("Reply Sent", T0 + 4 * HOUR))
    h.send(track("Other", T0 + 5 * HOUR))
    v = h.values()
    assert (v["msgs"], v["msgs_life"], v["two_kinds"]) == (3, 3, 4)
    # 40 days later the windowed counts are empty, the lifetime one is not.
    h.send(track("Message Sent", T0 + 40 * DAY))
    v = h.values()
    assert (v["msgs"], v["msgs_life"], v["two_kinds"]) == (1, 4, 1)


def test_count_with_where_sees_event_properties(h: Harness) -> None:
    h.send(track("Meeting Hosted", T0, props={"participants": 5, "room": "finance"}))
    h.send(track("Meeting Hosted", T0 + 1, props={"participants": 4, "room": "finance"}))
    h.send(track("Meeting Hosted", T0 + 2, props={"participants": 9, "room": "ops"}))
    h.send(track("Meeting Hosted", T0 + 3))  # no participants: None >= 5 is false
    h.send(track("Meeting Hosted", T0 + 4, props={"participants": "many"}))
    assert h.value("big") == 2
    assert h.value("finance_big") == 1


def test_sum_ignores_non_numeric_bool_missing_and_non_finite(h: Harness) -> None:
    h.send(track("File Uploaded", T0, props={"size_mb": 100}))
    h.send(track("File Uploaded", T0 + 1, props={"size_mb": 2.5}))
    h.send(track("File Uploaded", T0 + 2, props={"size_mb": "300"}))  # a string
    h.send(track("File Uploaded", T0 + 3, props={"size_mb": True}))  # bool is not a size
    h.send(track("File Uploaded", T0 + 4, props={"size_mb": None}))
    h.send(track("File Uploaded", T0 + 5, props={"other": 7}))  # missing
    h.send(track("File Uploaded", T0 + 6))  # no properties at all
    h.send(track("File Uploaded", T0 + 7, props={"size_mb": [1, 2]}))
    h.send(track("File Uploaded", T0 + 8, props={"size_mb": {"v": 1}}))
    h.send(track("Message Sent", T0 + 9, props={"size_mb": 1000}))  # another event
    assert h.value("storage") == 102.5
    assert h.value("storage_life") == 102.5
    h.send(track("File Uploaded", T0 + 10, props={"size_mb": -2.5}))
    assert h.value("storage") == 100
    assert h.value("storage_life") == 100


def test_sum_window_expires_by_day_bucket(h: Harness) -> None:
    h.send(track("File Uploaded", T0 + 5 * HOUR, props={"size_mb": 10}))
    h.send(track("File Uploaded", T0 + DAY, props={"size_mb": 1}))
    # bucket 1d, window 90d: day 0 leaves at T0 + 1d + 90d, day 1 at T0 + 2d + 90d.
    h.advance("acme", T0 + 91 * DAY - 1)
    assert h.value("storage") == 11
    h.advance("acme", T0 + 91 * DAY)
    assert h.value("storage") == 1
    assert h.value("storage_life") == 11
    h.advance("acme", T0 + 92 * DAY)
    assert h.value("storage") == 0


def test_distinct_users_windowed_counts_each_user_once_and_refreshes(h: Harness) -> None:
    # seats: 7d window -> 6h buckets (largest standard bucket <= 7d/24).
    assert h.model.signal("seats").bucket_ms == 6 * HOUR
    h.send(track("A", T0, user="u1"))
    h.send(track("B", T0 + 1, user="u1"))
    h.send(track("A", T0 + 2, user="u2"))
    h.send(identify("u3", T0 + 3, {"title": "x"}))  # not activity: never counts
    assert h.value("seats") == 2
    # u1 seen again in a later bucket: stays longer than u2.
    h.send(track("A", T0 + 6 * HOUR, user="u1"))
    assert h.value("seats") == 2
    h.advance("acme", T0 + 6 * HOUR + 7 * DAY - 1)
    assert h.value("seats") == 2
    h.advance("acme", T0 + 6 * HOUR + 7 * DAY)  # bucket 0 (u2) left the window
    assert h.value("seats") == 1
    h.advance("acme", T0 + 12 * HOUR + 7 * DAY)  # bucket 1 (u1) too
    assert h.value("seats") == 0


def test_distinct_users_lifetime_never_expires(h: Harness) -> None:
    h.send(track("Message Sent", T0, user="u1"))
    h.send(track("Message Sent", T0 + 1, user="u2"))
    h.send(track("Message Sent", T0 + 2, user="u1"))
    h.send(track("Reply Sent", T0 + 3, user="u3"))  # not a matching event
    assert h.value("writers") == 2
    h.send(track("Message Sent", T0 + 400 * DAY, user="u4"))
    assert h.value("writers") == 3
    assert h.value("seats") == 1


def test_anonymous_id_stands_in_for_user(h: Harness) -> None:
    obj = track("A", T0, user="x")
    del obj["userId"]
    obj["anonymousId"] = "anon-1"
    h.send(obj)
    h.send(track("A", T0 + 1, user="anon-1"))
    assert h.value("seats") == 1


def test_active_days_counts_utc_days_and_slides(h: Harness) -> None:
    h.send(track("A", T0 + 1 * HOUR))
    h.send(track("A", T0 + 23 * HOUR))
    h.send(track("Message Sent", T0 + DAY + 23 * HOUR + 59 * 60_000))
    h.send(track("A", T0 + 3 * DAY))
    v = h.values()
    assert v["days"] == 3
    assert v["days_life"] == 1
    # day 0 leaves the 14d window at T0 + 1d + 14d.
    h.advance("acme", T0 + 15 * DAY - 1)
    assert h.value("days") == 3
    h.advance("acme", T0 + 15 * DAY)
    assert h.value("days") == 2
    h.send(track("Message Sent", T0 + 100 * DAY))
    assert h.value("days") == 1
    assert h.value("days_life") == 2


def test_ever_and_ever_with_where(h: Harness) -> None:
    assert h.send(track("A", T0)) == []
    assert (h.value("onboarded"), h.value("onboarded_fast")) == (0, 0)
    h.send(track("Onboarding Completed", T0 + 1, props={"minutes": 30}))
    assert (h.value("onboarded"), h.value("onboarded_fast")) == (1, 0)
    h.send(track("Onboarding Completed", T0 + 2, props={"minutes": 3}))
    h.send(track("Onboarding Completed", T0 + 3, props={"minutes": 3}))
    assert (h.value("onboarded"), h.value("onboarded_fast")) == (1, 1)
    h.advance("acme", T0 + 1000 * DAY)
    assert (h.value("onboarded"), h.value("onboarded_fast")) == (1, 1)


def test_trait_latest_by_event_time(h: Harness) -> None:
    h.send(group("u1", "acme", T0 + 10 * HOUR, {"employees": 250, "industry": "finance"}))
    assert (h.value("employees"), h.value("industry")) == (250, "finance")
    # An older group call arriving later does not override the newer traits.
    h.send(group("u2", "acme", T0 + 5 * HOUR, {"employees": 3, "industry": "retail"}))
    assert (h.value("employees"), h.value("industry")) == (250, "finance")
    # A newer one does; traits it does not carry keep their value.
    h.send(group("u1", "acme", T0 + 11 * HOUR, {"employees": 300}))
    assert (h.value("employees"), h.value("industry")) == (300, "finance")
    # Unknown traits read as None for a fresh account.
    h.send(track("A", T0, account="other"))
    assert h.value("employees", "other") is None


def test_users_with_trait_in_set_and_title_changes_out(h: Harness) -> None:
    h.send(group("u1", "acme", T0, {}))
    h.send(group("u2", "acme", T0, {}))
    h.send(identify("u1", T0 + 1, {"title": "VP Sales"}))
    h.send(identify("u2", T0 + 2, {"title": "Engineer"}))
    assert (h.value("vps"), h.value("titled")) == (1, 2)
    h.send(identify("u2", T0 + 3, {"title": "CTO"}))
    assert (h.value("vps"), h.value("titled")) == (2, 2)
    # u1's title changes out of the set: no longer counted.
    h.send(identify("u1", T0 + 4, {"title": "Engineer"}))
    assert (h.value("vps"), h.value("titled")) == (1, 2)
    # an identify that does not mention the trait changes nothing
    h.send(identify("u2", T0 + 5, {"name": "Bo"}))
    assert (h.value("vps"), h.value("titled")) == (1, 2)
    # a null title: not in the set, and not "any non-null"
    h.send(identify("u2", T0 + 6, {"title": None}))
    assert (h.value("vps"), h.value("titled")) == (0, 1)
    # user-keyed trait signals do not expire with time
    h.advance("acme", T0 + 500 * DAY)
    assert (h.value("vps"), h.value("titled")) == (0, 1)


def test_identify_before_group_rides_along_via_resolver(h: Harness) -> None:
    # No account yet: the identify is absorbed by the resolver (no transition, no state).
    assert h.send(identify("u9", T0, {"title": "VP Sales"})) == []
    assert h.states == {}
    h.send(group("u9", "acme", T0 + HOUR, {"employees": 40}))
    assert h.value("vps") == 1
    assert h.value("employees") == 40
    # Later identify calls go to the user's account (membership), no groupId needed.
    h.send(identify("u9", T0 + 2 * HOUR, {"title": "Intern"}))
    assert h.value("vps") == 0


def test_track_without_group_id_is_routed_by_membership(h: Harness) -> None:
    h.send(group("u5", "globex", T0, {}))
    h.send(track("Message Sent", T0 + 1, user="u5", account=None))
    assert h.value("msgs", "globex") == 1
    assert "acme" not in h.states


def test_events_the_model_does_not_read_do_not_evaluate(h: Harness) -> None:
    h.send(track("Message Sent", T0))
    state = h.states["acme"]
    before = (state.score, state.pql, list(state.segments))
    out = h.scorer.apply("acme", state, _event(track("Nothing", T0 + 1)))
    # seats/days are "any" signals: the unknown event still counts as activity, nothing else.
    assert out.transitions == []
    assert (state.score, state.pql, list(state.segments)) == before
    assert h.value("msgs") == 1


def _event(obj):  # type: ignore[no-untyped-def]
    from streams.events.parse import event_from_obj

    return event_from_obj(obj)
