"""Why a creator's code is refused. Each reason is stable: callers switch on it.

The reasons are this service's own words, defined here; TikTok's words for what it refuses are the adapter's
(`TikTokRefusal`), and `REFUSAL_BY_TIKTOK` says which of ours each of TikTok's becomes.
"""

from __future__ import annotations

from app.kit.errors import ProblemError
from app.tiktok.errors import TikTokRefusal


class AuthorizationNotFound(ProblemError):
    status = 404
    reason = "authorization_not_found"
    title = "No authorization with this id"


class AuthorizationInProgress(ProblemError):
    """Another request is applying a code for the same post to the same ad account and has not finished."""

    status = 409
    reason = "authorization_in_progress"
    title = "A code for this post is being applied by another request"
    retryable = True
    retry_after_seconds = 1


class AdsStillActive(ProblemError):
    """D16: un-authorizing is refused while the ad account still runs ads on the post."""

    status = 409
    reason = "ads_still_active"
    title = "Ads still use this post in this ad account; remove them first"


class PairStillBound(ProblemError):
    """The original post of a Duet/Stitch that is still authorized here: un-authorizing the Duet/Stitch ends both."""

    status = 409
    reason = "pair_still_bound"
    title = "A Duet or Stitch made from this post is still authorized; un-authorize it, which ends both"


class CodeRefused(ProblemError):
    """Base of the 422 answers that say what is wrong with a code or its post."""

    status = 422


class AuthCodeInvalid(CodeRefused):
    reason = "auth_code_invalid"
    title = "This is not a TikTok video authorization code"


class AuthCodeNotFound(CodeRefused):
    reason = "auth_code_not_found"
    title = "TikTok does not know this code, or its creator deleted it"


class AuthCodeExpired(CodeRefused):
    reason = "auth_code_expired"
    title = "The code's authorization window has ended; ask the creator for a new code"


class PostDeleted(CodeRefused):
    reason = "post_deleted"
    title = "The creator deleted this post"


class PostBanned(CodeRefused):
    reason = "post_banned"
    title = "TikTok removed this post; banned posts cannot be used in ads"


class VideoTooLong(CodeRefused):
    reason = "video_too_long"
    title = "The video is longer than Spark Ads allow"


class MultiLevelDuetStitch(CodeRefused):
    reason = "multi_level_duet_stitch"
    title = "A Duet of a Duet, or a Stitch of a Stitch, cannot be used"


class MentionsMultipleVideos(CodeRefused):
    reason = "mentions_multiple_videos"
    title = "The post mentions more than one video"


class CarouselDuetNotSupported(CodeRefused):
    reason = "carousel_duet_not_supported"
    title = "A carousel Duet or Stitch cannot be used"


class StoryVideoNotSupported(CodeRefused):
    reason = "story_video_not_supported"
    title = "Story videos cannot be used as Spark Ads"


class OriginalPostCodeRequired(CodeRefused):
    reason = "original_post_code_required"
    title = "This is a Duet or Stitch: the original post's creator must authorize too"


class OriginalPostCodeMismatch(CodeRefused):
    reason = "original_post_code_mismatch"
    title = "The original post's code is not for the post this Duet or Stitch was made from"


class OwnPostNotFound(CodeRefused):
    reason = "own_post_not_found"
    title = "TikTok shows no such post under this identity"


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

# What each of TikTok's refusals means for a caller. `already_authorized` is not a refusal of the code: the post
# is bound to this ad account already, which intake settles itself rather than refusing.
REFUSAL_BY_TIKTOK: dict[TikTokRefusal, type[CodeRefused]] = {
    TikTokRefusal.auth_code_format_error: AuthCodeInvalid,
    TikTokRefusal.auth_code_expired: AuthCodeExpired,
    TikTokRefusal.auth_code_not_found: AuthCodeNotFound,
    TikTokRefusal.video_deleted: PostDeleted,
    TikTokRefusal.video_unavailable: PostDeleted,  # 4002, one code with video_deleted in Ads Manager
    TikTokRefusal.illegal_item_status_error: PostBanned,
    TikTokRefusal.mention_multiple_videos: MentionsMultipleVideos,
    TikTokRefusal.multi_duet_stitch_refused: MultiLevelDuetStitch,
    TikTokRefusal.carousel_duet_not_supported: CarouselDuetNotSupported,
    TikTokRefusal.story_video_not_supported: StoryVideoNotSupported,
    TikTokRefusal.original_post_auth_code_required: OriginalPostCodeRequired,
    TikTokRefusal.original_post_auth_code_mismatch: OriginalPostCodeMismatch,
}
