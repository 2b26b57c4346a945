"""The plugin, black-box: a pytester session sees only options, headers, outcomes."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_options_are_documented_in_one_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["renderchaos: chaos and conformance suite:",
                                 "*--chaos-profile=NAME*", "*--chaos-seed=N*", "*--chaos-target=PATH*",
                                 "*--chaos-broken=VARIANT*", "*--chaos-image=SERVICE=IMAGE*"])


def test_header_names_profile_seed_and_target(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("import pytest\n@pytest.mark.resilience\ndef test_ok(): pass")
    result = pytester.runpytest("--chaos-profile", "resilience", "--chaos-seed", "1234")
    result.stdout.fnmatch_lines(["renderchaos: profile=resilience * seed=1234 run=*",
                                 "renderchaos: target=reference stack (containers) platform=refstack workers=2"])
    assert result.ret == 0


def test_unknown_profile_is_a_usage_error_naming_the_choices(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--chaos-profile", "nightly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown profile 'nightly'; choose one of ['all', 'gate', 'load', 'resilience']" in result.stderr.str()


@pytest.mark.parametrize("args, message", [
    (["--chaos-image", "postgres"], "*expected SERVICE=IMAGE*"),
    (["--chaos-workers", "0"], "*--chaos-workers must be >= 1*"),
    (["--chaos-timeout-factor", "-1"], "*--chaos-timeout-factor must be > 0*"),
    (["--chaos-broken", "x", "--chaos-target", "t.toml"], "*--chaos-broken applies to the reference stack only*"),
])
def test_bad_options_say_what_to_do(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_markers_are_registered_for_strict_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.gate
        @pytest.mark.resilience
        @pytest.mark.load
        @pytest.mark.slow
        @pytest.mark.scenario("render.timeout")
        def test_marked(): pass
    """)
    assert pytester.runpytest("--strict-markers").ret == 0


def test_explicit_profile_selects_its_markers_and_plain_run_does_not(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.gate
        def test_fast(): pass
        @pytest.mark.resilience
        def test_destructive(): pass
        def test_unmarked(): pass
    """)
    pytester.runpytest("--chaos-profile", "gate").assert_outcomes(passed=1, deselected=2)
    pytester.runpytest("--chaos-profile", "resilience").assert_outcomes(passed=2, deselected=1)
    pytester.runpytest().assert_outcomes(passed=3)
    # the user's own -m wins over the profile's selection
    pytester.runpytest("--chaos-profile", "gate", "-m", "resilience").assert_outcomes(passed=1, deselected=2)


def test_seed_makes_rng_and_faker_replayable(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_values(chaos_rng, chaos_faker, chaos_seed):
            print("VALUES", chaos_seed, chaos_rng.random(), chaos_faker.name())
    """)
    def values(*args):
        out = pytester.runpytest("-s", *args).stdout.lines
        return [line for line in out if "VALUES" in line]
    a, b, c = values("--chaos-seed", "7"), values("--chaos-seed", "7"), values("--chaos-seed", "8")
    assert a == b and a and a != c


def _target_file(pytester: pytest.Pytester, body: str) -> str:
    path = pytester.path / "target.toml"
    path.write_text(body)
    return str(path)


def test_external_target_skips_what_it_lacks_with_the_reason(pytester: pytest.Pytester) -> None:
    target = _target_file(pytester, """
        [target]
        name = "staging"
        platform = "refstack"
        api_url = "http://127.0.0.1:9"
        admin_token = "t"
    """)
    pytester.makepyfile("""
        import pytest
        @pytest.mark.needs("containers:worker")
        def test_kills_worker(chaos_target): pass
        @pytest.mark.needs("auth", "credits")
        def test_api(chaos_target):
            assert chaos_target.kind == "external"
            assert chaos_target.platform.endpoint.api_url == "http://127.0.0.1:9"
    """)
    result = pytester.runpytest("--chaos-target", target, "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    out = result.stdout.str()
    assert "target 'staging' (external, platform refstack) lacks ['containers:worker']" in out
    assert "disposable = true" in out  # the skip says how to allow container faults


@pytest.mark.parametrize("body, message", [
    ('[target]\nname="x"\napi_url="http://10.1.2.3:80"\nadmin_token="t"\n', "*is not loopback*"),
    ('[target]\nname="x"\napi_url="http://127.0.0.1:80"\n', "*needs the admin token*"),
    ('[target]\nname="x"\napi_url="http://127.0.0.1:80"\nadmin_token="${RC_UNSET_TOKEN}"\n',
     "*${RC_UNSET_TOKEN} but that environment variable is unset*"),
    ('[target]\nname="x"\napi_url="http://127.0.0.1:80"\nadmin_token="t"\ncapabilities=["containers"]\n',
     "*capabilities is gone*"),
    ('[target]\nname="x"\napi_url="http://127.0.0.1:80"\nadmin_token="t"\n[containers]\nworker=["w1"]\n',
     "*disposable is not true*"),
    ('[target]\nname="x"\nplatform="nope"\napi_url="http://127.0.0.1:80"\n', "*no platform adapter named 'nope'*"),
    ("[target\n", "*is not valid TOML*"),
])
def test_bad_target_files_fail_with_a_clear_message(pytester: pytest.Pytester, body: str, message: str) -> None:
    target = _target_file(pytester, body)
    pytester.makepyfile("def test_x(chaos_target): pass")
    result = pytester.runpytest("--chaos-target", target)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])
