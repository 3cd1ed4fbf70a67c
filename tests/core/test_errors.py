import pytest

from roomsecrets.core import errors


def all_error_classes():
    seen, todo = [], [errors.RoomSecretsError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return [cls for cls in seen if cls.__module__ == errors.__name__]


def test_every_error_derives_from_the_root_and_has_a_unique_code():
    classes = all_error_classes()
    assert len(classes) >= 20
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), codes
    for cls in classes:
        assert issubclass(cls, errors.RoomSecretsError)


def test_provider_failures_are_retryable_oauth_errors_mostly_not():
    assert errors.ProviderUnavailable("x").retryable
    assert errors.ProviderTimeout("x").retryable
    assert not errors.InvalidGrant().retryable
    assert not errors.InvalidClient().retryable
    assert errors.TemporarilyUnavailable().retryable


def test_grant_denied_is_a_permission_error_and_invalid_input_a_value_error():
    assert issubclass(errors.GrantDenied, PermissionError)
    assert issubclass(errors.InvalidInput, ValueError)


def test_unknown_oauth_error_code_keeps_the_code():
    exc = errors.oauth_error_from_response("slow_down", "wait", None, 400)
    assert type(exc) is errors.OAuthError
    assert exc.error == "slow_down"
    assert str(exc) == "slow_down (HTTP 400): wait"


@pytest.mark.parametrize("value", [None, 5, ["x"]])
def test_non_string_fields_are_dropped(value):
    exc = errors.oauth_error_from_response(value, value, value)
    assert exc.error == "oauth_error"
    assert exc.description is None and exc.uri is None


def test_safe_text_strips_control_and_quote_characters():
    assert errors.safe_text('a"b\\c\x00d\ne') == "abcde"
    assert errors.safe_text("x" * 1000, 10) == "xxxxxxx..."
    assert errors.safe_text("\n") is None
