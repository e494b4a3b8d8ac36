"""Why a creator's code is refused. Each reason is stable: callers switch on it."""

from __future__ import annotations

from app.kit.errors import ProblemError
from app.tiktok.errors import SparkCodeProblem


class AuthorizationNotFound(ProblemError):
    status = 404
    reason = "authorization_not_found"
    title = "No authorization with this id"


class CodeRefused(ProblemError):
    """Base of the 422 answers that say what is wrong with a code or its post."""

    status = 422


class AuthCodeInvalid(CodeRefused):
    reason = SparkCodeProblem.auth_code_invalid.value
    title = "This is not a TikTok video authorization code"


class AuthCodeNotFound(CodeRefused):
    reason = SparkCodeProblem.auth_code_not_found.value
    title = "TikTok does not know this code, or its creator deleted it"


class AuthCodeExpired(CodeRefused):
    reason = SparkCodeProblem.auth_code_expired.value
    title = "The code's authorization window has ended; ask the creator for a new code"


class PostDeleted(CodeRefused):
    reason = SparkCodeProblem.post_deleted.value
    title = "The creator deleted this post"


class PostBanned(CodeRefused):
    reason = SparkCodeProblem.post_banned.value
    title = "TikTok removed this post; banned posts cannot be used in ads"


class VideoTooLong(CodeRefused):
    reason = "video_too_long"
    title = "The video is longer than Spark Ads allow"


class MultiLevelDuetStitch(CodeRefused):
    reason = SparkCodeProblem.multi_level_duet_stitch.value
    title = "A Duet of a Duet, or a Stitch of a Stitch, cannot be used"


class MentionsMultipleVideos(CodeRefused):
    reason = SparkCodeProblem.mentions_multiple_videos.value
    title = "The post mentions more than one video"


class CarouselDuetNotSupported(CodeRefused):
    reason = SparkCodeProblem.carousel_duet_not_supported.value
    title = "A carousel Duet or Stitch cannot be used"


class StoryVideoNotSupported(CodeRefused):
    reason = SparkCodeProblem.story_video_not_supported.value
    title = "Story videos cannot be used as Spark Ads"


class OriginalPostCodeRequired(CodeRefused):
    reason = SparkCodeProblem.original_post_code_required.value
    title = "This is a Duet or Stitch: the original post's creator must authorize too"


class OriginalPostCodeMismatch(CodeRefused):
    reason = SparkCodeProblem.original_post_code_mismatch.value
    title = "The original post's code is not for the post this Duet or Stitch was made from"


class OriginalPostCodeUnexpected(CodeRefused):
    reason = "original_post_code_unexpected"
    title = "Neither post is a Duet or Stitch of the other"


REFUSALS: tuple[type[CodeRefused], ...] = (
    AuthCodeInvalid,
    AuthCodeNotFound,
    AuthCodeExpired,
    PostDeleted,
    PostBanned,
    VideoTooLong,
    MultiLevelDuetStitch,
    MentionsMultipleVideos,
    CarouselDuetNotSupported,
    StoryVideoNotSupported,
    OriginalPostCodeRequired,
    OriginalPostCodeMismatch,
    OriginalPostCodeUnexpected,
)

REFUSAL_BY_PROBLEM: dict[SparkCodeProblem, type[CodeRefused]] = {
    SparkCodeProblem(refusal.reason): refusal
    for refusal in REFUSALS
    if refusal.reason in SparkCodeProblem._value2member_map_
}
