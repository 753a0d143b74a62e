"""The model catalogue, model references and credits, against the fake."""

from __future__ import annotations

import asyncio

import pytest

from bot.openrouter import ModelRefError, OpenRouterClient, OpenRouterError, resolve
from bot.openrouter.cache import CachedValue
from bot.openrouter.catalogue import suggest
from bot.openrouter.errors import ErrorKind
from bot.openrouter.refs import to_api_id
from tests.conftest import make_client
from tests.fakes.openrouter import MANAGEMENT_KEY, FakeOpenRouter


async def test_fifty_concurrent_reads_make_one_request(fake: FakeOpenRouter) -> None:
    fake.models_delay_s = 0.05  # long enough that all fifty wait on the same fetch
    async with make_client(fake) as client:
        results = await asyncio.gather(*(client.catalogue.models() for _ in range(50)))
        assert fake.count("/models") == 1
        assert all(r is results[0] for r in results)
        await client.catalogue.get("openai/gpt-4o")
        assert fake.count("/models") == 1


async def test_catalogue_entries_are_read(client: OpenRouterClient) -> None:
    sonnet = await client.catalogue.get("anthropic/claude-sonnet-4")
    assert sonnet is not None
    assert sonnet.canonical == "openrouter/anthropic/claude-sonnet-4"
    assert sonnet.context_length == 200_000
    assert sonnet.prompt_price == pytest.approx(3e-6)
    assert sonnet.completion_price == pytest.approx(15e-6)
    assert sonnet.supports_tools
    assert sonnet.supports_images
    free = await client.catalogue.get("meta-llama/llama-3.1-8b:free")
    assert free is not None
    assert not free.supports_tools
    assert not free.supports_images
    assert free.prompt_price == 0
    auto = await client.catalogue.get("openrouter/auto")
    assert auto is not None
    assert auto.prompt_price is None


async def test_stale_copy_is_served_when_a_refresh_fails(fake: FakeOpenRouter) -> None:
    async with make_client(fake, models_ttl_s=0) as client:
        first = await client.catalogue.models()
        fake.models_fail_status = 503
        again = await client.catalogue.models()
        assert again == first
        assert fake.count("/models") >= 2  # it did try to refresh


async def test_no_copy_and_no_catalogue_is_a_clear_error(fake: FakeOpenRouter) -> None:
    fake.models_fail_status = 503
    async with make_client(fake, max_retries=0) as client:
        with pytest.raises(OpenRouterError) as caught:
            await client.catalogue.models()
    assert caught.value.kind is ErrorKind.PROVIDER_UNAVAILABLE


async def test_cached_value_expires_after_its_ttl() -> None:
    now = [0.0]
    calls = []

    async def fetch() -> int:
        calls.append(now[0])
        return len(calls)

    cached = CachedValue(fetch, ttl_s=10, clock=lambda: now[0])
    assert await cached.get() == 1
    now[0] = 9.9
    assert await cached.get() == 1
    now[0] = 10.0
    assert await cached.get() == 2
    assert calls == [0.0, 10.0]


async def test_a_caller_giving_up_does_not_cancel_the_shared_fetch() -> None:
    gate = asyncio.Event()

    async def fetch() -> str:
        await gate.wait()
        return "models"

    cached: CachedValue[str] = CachedValue(fetch, ttl_s=60)
    impatient = asyncio.ensure_future(cached.get())
    patient = asyncio.ensure_future(cached.get())
    await asyncio.sleep(0)
    impatient.cancel()
    gate.set()
    assert await patient == "models"


async def test_search(client: OpenRouterClient) -> None:
    found = [m.id for m in await client.catalogue.search("claude")]
    assert found == ["anthropic/claude-haiku-4.5", "anthropic/claude-sonnet-4"]
    assert [m.id for m in await client.catalogue.search("openai mini")] == ["openai/gpt-4o-mini"]
    assert [m.id for m in await client.catalogue.search("Gemini")] == ["google/gemini-2.5-flash"]
    assert await client.catalogue.search("nothing-like-this") == []
    assert len(await client.catalogue.search("")) == len(await client.catalogue.models())


# -- model references -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "api_id", "canonical"),
    [
        (
            "openrouter/anthropic/claude-sonnet-4",
            "anthropic/claude-sonnet-4",
            "openrouter/anthropic/claude-sonnet-4",
        ),
        (
            "openrouter/meta-llama/llama-3.1-8b:free",
            "meta-llama/llama-3.1-8b:free",
            "openrouter/meta-llama/llama-3.1-8b:free",
        ),
        ("openrouter/auto", "openrouter/auto", "openrouter/auto"),
        ("z-ai/glm-4.7", "z-ai/glm-4.7", "openrouter/z-ai/glm-4.7"),
        (
            "  `OpenRouter/Anthropic/Claude-Sonnet-4` ",
            "anthropic/claude-sonnet-4",
            "openrouter/anthropic/claude-sonnet-4",
        ),
        ("openrouter/openai/gpt-4o:nitro", "openai/gpt-4o:nitro", "openrouter/openai/gpt-4o:nitro"),
    ],
)
async def test_known_references(
    client: OpenRouterClient, text: str, api_id: str, canonical: str
) -> None:
    ref = await resolve(text, client.catalogue)
    assert ref.api_id == api_id
    assert ref.canonical == canonical == str(ref)


async def test_vendor_model_form_needs_a_known_model(client: OpenRouterClient) -> None:
    with pytest.raises(ModelRefError) as caught:
        await resolve("z-ai/glm-4.8", client.catalogue)
    message = str(caught.value)
    assert "openrouter/<vendor>/<model>[:variant]" in message
    assert "Did you mean openrouter/z-ai/glm-4.7" in message


@pytest.mark.parametrize(
    "text",
    ["gpt4", "claude sonnet", "openrouter/", "/x", "acme/", "a/b/c/d", "", "rm -rf /", "x" * 300],
)
async def test_nonsense_references(client: OpenRouterClient, text: str) -> None:
    with pytest.raises(ModelRefError) as caught:
        await resolve(text, client.catalogue)
    message = str(caught.value)
    assert "Model ids look like openrouter/<vendor>/<model>[:variant]" in message
    assert len(message) < 400


async def test_free_variant_must_exist_and_unknown_variants_are_refused(
    client: OpenRouterClient,
) -> None:
    with pytest.raises(ModelRefError):
        await resolve("openrouter/openai/gpt-4o:free", client.catalogue)
    with pytest.raises(ModelRefError):
        await resolve("openrouter/openai/gpt-4o:turbo", client.catalogue)


async def test_suggestions_for_near_misses(client: OpenRouterClient) -> None:
    with pytest.raises(ModelRefError) as caught:
        await resolve("anthropic/claude-sonet-4", client.catalogue)
    assert caught.value.suggestions[0] == "openrouter/anthropic/claude-sonnet-4"
    with pytest.raises(ModelRefError) as caught:
        await resolve("glm-4.7", client.catalogue)
    assert caught.value.suggestions[0] == "openrouter/z-ai/glm-4.7"


def test_reference_shapes() -> None:
    assert to_api_id("openrouter/openrouter/auto") == "openrouter/auto"
    assert to_api_id("~anthropic/claude-sonnet-latest") == "~anthropic/claude-sonnet-latest"
    with pytest.raises(ModelRefError):
        to_api_id("anthropic/claude sonnet")
    assert suggest("qqqqqqq", ["openai/gpt-4o"]) == []


# -- credits ----------------------------------------------------------------------------


async def test_credits_with_a_management_key(fake: FakeOpenRouter) -> None:
    async with make_client(fake, management_key=MANAGEMENT_KEY) as client:
        credits = await client.credits()
        assert credits.source == "credits"
        assert credits.balance == pytest.approx(74.75)
        assert credits.note is None
        await client.credits()
    assert fake.count("/credits") == 1  # cached
    assert fake.requests[0].headers["Authorization"] == f"Bearer {MANAGEMENT_KEY}"


async def test_credits_fall_back_to_key_on_403(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    credits = await client.credits()
    assert [r.path for r in fake.requests] == ["/api/v1/credits", "/api/v1/key"]
    assert credits.source == "key"
    assert credits.balance == 74.5
    assert credits.limit == 100
    assert credits.limit_reset == "monthly"
    assert credits.total_usage == 25.5


async def test_a_key_without_limit_says_the_balance_is_unknown(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake.key_data = {**fake.key_data, "limit": None, "limit_remaining": None}
    credits = await client.credits()
    assert credits.balance is None
    assert credits.note is not None
    assert "ROUTERBOT_OPENROUTER_MANAGEMENT_KEY" in credits.note


async def test_credits_cache_expires(fake: FakeOpenRouter) -> None:
    async with make_client(fake, management_key=MANAGEMENT_KEY, credits_ttl_s=0) as client:
        await client.credits()
        fake.credits_data = {"total_credits": 10, "total_usage": 9.5}
        assert (await client.credits()).balance == pytest.approx(0.5)
    assert fake.count("/credits") == 2
