"""The fake Slack Web API, driven by the real slack-sdk AsyncWebClient."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import BOT_TOKEN, BOT_USER_ID, FakeSlack, Tier


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(max_text=4000) as fake:
        yield fake


@pytest.fixture
def web(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)


async def test_auth_test(web: AsyncWebClient) -> None:
    answer = await web.auth_test()
    assert answer["user_id"] == BOT_USER_ID
    assert answer["bot_id"]
    assert answer["team_id"]


async def test_post_update_and_thread(slack: FakeSlack, web: AsyncWebClient) -> None:
    root = slack.add_message("C1", "<@U0BOT> hello", user="U1")
    posted = await web.chat_postMessage(channel="C1", thread_ts=root, text="thinking...")
    await web.chat_update(channel="C1", ts=posted["ts"], text="Hello, team.")
    thread = slack.thread("C1", root)
    assert [m.text for m in thread] == ["<@U0BOT> hello", "Hello, team."]
    assert thread[1].edits == 1
    assert [c.method for c in slack.calls] == ["chat.postMessage", "chat.update"]


async def test_streaming_methods(slack: FakeSlack, web: AsyncWebClient) -> None:
    root = slack.add_message("C1", "question", user="U1")
    started = await web.chat_startStream(
        channel="C1", thread_ts=root, recipient_user_id="U1", recipient_team_id="T0FAKE"
    )
    await web.chat_appendStream(channel="C1", ts=started["ts"], markdown_text="Hel")
    await web.chat_appendStream(channel="C1", ts=started["ts"], markdown_text="lo")
    await web.chat_stopStream(
        channel="C1", ts=started["ts"], chunks=[{"type": "markdown_text", "text": "!"}]
    )
    assert slack.thread("C1", root)[1].text == "Hello!"
    with pytest.raises(SlackApiError) as caught:
        await web.chat_appendStream(channel="C1", ts=started["ts"], markdown_text="late")
    assert caught.value.response["error"] == "message_not_in_streaming_state"


async def test_replies_are_paged(slack: FakeSlack, web: AsyncWebClient) -> None:
    root = slack.add_message("C1", "first", user="U1")
    for i in range(5):
        slack.add_message("C1", f"reply {i}", user="U2", thread_ts=root)
    page = await web.conversations_replies(channel="C1", ts=root, limit=4)
    assert [m["text"] for m in page["messages"]] == ["first", "reply 0", "reply 1", "reply 2"]
    assert page["has_more"] is True
    cursor = page["response_metadata"]["next_cursor"]
    rest = await web.conversations_replies(channel="C1", ts=root, limit=4, cursor=cursor)
    assert [m["text"] for m in rest["messages"]] == ["reply 3", "reply 4"]
    assert rest["has_more"] is False


async def test_users_info(slack: FakeSlack, web: AsyncWebClient) -> None:
    slack.add_user("U1", "Alice", admin=True)
    user = (await web.users_info(user="U1"))["user"]
    assert user["profile"]["display_name"] == "Alice"
    assert user["is_admin"] is True
    with pytest.raises(SlackApiError):
        await web.users_info(user="U404")


async def test_errors_slack_gives(slack: FakeSlack, web: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as caught:
        await web.chat_postMessage(channel="C1", text="x" * 4001)
    assert caught.value.response["error"] == "msg_too_long"
    bad = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url)
    with pytest.raises(SlackApiError) as caught:
        await bad.auth_test()
    assert caught.value.response["error"] == "invalid_auth"


async def test_rate_tiers_answer_ratelimited(slack: FakeSlack, web: AsyncWebClient) -> None:
    slack.tiers["chat.update"] = Tier(2, 60.0)
    posted = await web.chat_postMessage(channel="C1", text="a")
    await web.chat_update(channel="C1", ts=posted["ts"], text="b")
    await web.chat_update(channel="C1", ts=posted["ts"], text="c")
    with pytest.raises(SlackApiError) as caught:
        await web.chat_update(channel="C1", ts=posted["ts"], text="d")
    assert caught.value.response.status_code == 429
    assert caught.value.response["error"] == "ratelimited"
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    assert slack.messages[("C1", posted["ts"])].text == "c"
