"""The SQLite gallery tests, run unchanged on PostgreSQL: each gets a fresh database."""

from __future__ import annotations

# Collected again here, where the `db_url` fixture names a PostgreSQL database.
from tests.unit.gallery.test_calibrations_repo import (  # noqa: F401
    test_a_calibration_round_trips_through_the_store,
    test_rows_are_inserted_replaced_or_kept_and_removed,
)
from tests.unit.gallery.test_db import (  # noqa: F401
    test_foreign_keys_are_enforced,
    test_migrate_is_idempotent_and_keeps_data,
    test_migration_matches_the_orm,
    test_objects_stay_readable_after_commit_with_utc_timestamps,
)
from tests.unit.gallery.test_job_owners import (  # noqa: F401
    test_a_job_asked_to_cancel_ends_cancelled_once_its_process_is_gone,
    test_a_job_whose_process_is_gone_ends_interrupted,
    test_a_stale_heartbeat_counts_whatever_the_host,
    test_leftover_checkpoints_are_removed_and_registered_ones_kept,
    test_migration_0004_adds_owners_to_stored_jobs_and_goes_back,
    test_start_up_keeps_live_jobs_and_ends_unowned_ones,
)
from tests.unit.gallery.test_job_tracker import (  # noqa: F401
    test_a_begun_job_beats_while_busy_and_stops_beating_when_closed,
)
from tests.unit.gallery.test_jobs_repo import (  # noqa: F401
    test_a_job_runs_and_finishes_once,
    test_a_stopped_job_ends_interrupted_or_cancelled,
    test_an_abandoned_job_ends_only_as_it_was_read,
    test_cancelling_a_queued_job_keeps_it_from_starting,
    test_the_owner_and_its_heartbeat_are_recorded,
    test_unknown_jobs_raise,
)
from tests.unit.gallery.test_migration_0007 import (  # noqa: F401
    test_migration_0007_refolds_stored_names_and_goes_back,
)
from tests.unit.gallery.test_migration_0008 import (  # noqa: F401
    test_migration_0008_refolds_stored_names_and_goes_back,
)
from tests.unit.gallery.test_migration_0009 import (  # noqa: F401
    test_migration_0009_refolds_stored_names_and_goes_back,
)
from tests.unit.gallery.test_migration_0010 import (  # noqa: F401
    test_migration_0010_refolds_stored_names_and_goes_back,
)
from tests.unit.gallery.test_migration_0011 import (  # noqa: F401
    test_a_leftover_table_from_a_restore_is_replaced_and_the_downgrade_drops_it,
)
from tests.unit.gallery.test_models_repo import (  # noqa: F401
    test_crops_missing_a_version,
    test_the_latest_activation_wins,
)
from tests.unit.gallery.test_repository import (  # noqa: F401
    test_a_page_after_a_cursor_follows_the_listing_order_ties_included,
    test_add_embeddings_for_a_new_model_and_faces_with_crops,
    test_add_face_rejects_a_vector_of_the_wrong_size,
    test_delete_face,
    test_delete_subject_cascades_to_faces_and_embeddings,
    test_deletes_leave_no_stale_rows_in_the_session,
    test_face_ids_are_never_reused,
    test_faces_round_trip_and_counts,
    test_list_subjects_paginates_and_filters_by_name,
    test_subject_crud,
    test_unknown_subject_raises_everywhere,
    test_vectors_round_trip_bit_exactly,
)
