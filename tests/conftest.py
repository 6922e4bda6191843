"""The whole test run sees no system dataset, even on a machine that has it.

The README's test command must be all the set-up a user needs, so no test and
no quick-mode notebook may depend on the full Fashion-MNIST that
``apt-get install dataset-fashion-mnist`` puts in
``/usr/share/datasets/fashion-mnist``.  Two layers make that hold on every
machine, CI included:

1. ``_CAPTUM_PRIOR_HIDE_SYSTEM_DATA=1`` in the environment: the loader
   (``captum_prior.data.load_fashion_mnist``) then does not search the Debian
   folder, and raises its usual "not found" message.  Every process the tests
   start inherits it (notebook kernels, the CLI, torchrun workers).
2. An audit hook (``tests/_system_data_guard/sitecustomize.py``) in pytest
   and, through ``PYTHONPATH``, in every Python subprocess that keeps the
   inherited ``PYTHONPATH``: opening or listing anything under the system
   folder raises ``SystemDataRead`` and is logged; an autouse fixture fails
   the test whose run (in any process) logged a read.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

from captum_prior.data import fashion_mnist

GUARD_DIR = Path(__file__).resolve().parent / "_system_data_guard"
_spec = importlib.util.spec_from_file_location("_system_data_guard", GUARD_DIR / "sitecustomize.py")
guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(guard)

os.environ[fashion_mnist.HIDE_SYSTEM_VAR] = "1"
os.environ[guard.WATCH_VAR] = os.path.abspath(fashion_mnist.DEBIAN_DIR)
_fd, _log = tempfile.mkstemp(prefix="captum_prior_system_data_reads_", suffix=".log")
os.close(_fd)
os.environ[guard.LOG_VAR] = _log
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))
guard.install()


def _log_size() -> int:
    return os.path.getsize(_log)


@pytest.fixture(autouse=True)
def no_system_dataset_read():
    """Fail the test if it (or a process it started) read the system dataset."""
    start = _log_size()
    yield
    if _log_size() > start:
        with open(_log) as fh:
            fh.seek(start)
            reads = fh.read()
        pytest.fail("the test read the system dataset (the README's set-up does not install it):\n" + reads,
                    pytrace=False)


def pytest_unconfigure(config):
    try:
        os.remove(_log)
    except OSError:
        pass


# ---------------------------------------------------------------- test tiers
#: test modules that are slow as a whole: every notebook executed, every
#: README block in a subprocess, a two-rank torchrun.
SLOW_MODULES = frozenset({"test_tutorials.py", "test_readme.py", "test_torchrun.py"})

#: every other test whose calls (all parametrisations together) took more
#: than about 0.65 s on an idle 2-core machine: measured with
#: ``pytest --durations=0`` (summed per test over its parametrisations),
#: cut so that ``pytest -m "not slow"`` stays under a minute.  Written as
#: ``module::test name`` without the parametrisation; one entry marks every
#: parametrisation.  A new test over the cut belongs here.
SLOW_TESTS = frozenset({
    "test_allocator.py::test_fixed_thresholds_stop_the_page_fault_churn_and_change_no_result",
    "test_bad_input.py::test_0_255_images_warn_for_the_bundled_model",
    "test_bad_input.py::test_bay_lime_names_a_tuple_output_and_a_wrong_feature_mask",
    "test_bad_input.py::test_dmm_men_convergence_warning_is_shown_once_over_many_fits",
    "test_bad_input.py::test_input_range_warning_is_shown_once_in_a_17_image_loop",
    "test_bad_input.py::test_nan_model_output_raises_naming_model_and_example",
    "test_bad_input.py::test_options_are_validated_where_given",
    "test_bad_input.py::test_train_mode_model_warns_and_mode_is_unchanged",
    "test_bay_lime.py::test_intervals_shrink_as_samples_grow",
    "test_captum_dropin.py::test_callable_baselines_everywhere",
    "test_captum_dropin.py::test_gradient_shap_callable_baselines_and_noise",
    "test_captum_dropin.py::test_ig_target_forms_on_2d_outputs",
    "test_captum_dropin.py::test_tuple_targets_on_4d_outputs_equal_picked_scalar_output",
    "test_chunking.py::test_chunk_size_does_not_grow_with_the_number_of_rows",
    "test_chunking.py::test_default_insertion_deletion_and_eg_are_not_the_slow_all_at_once_call",
    "test_chunking.py::test_default_sizes_chunks_from_the_activation_and_explicit_is_obeyed",
    "test_chunking.py::test_peak_memory_is_flat_in_n_samples",
    "test_cli.py::test_bad_input_one_line_exit_2",
    "test_cli.py::test_captum_gradient_shap_in_explain_is_chunked_and_unchanged",
    "test_cli.py::test_captum_ig_in_explain_is_chunked_by_default",
    "test_cli.py::test_class_index_mapping_and_label_disagreement_warning",
    "test_cli.py::test_evaluate_steps_reference_and_forward_pass_count",
    "test_cli.py::test_every_method_runs",
    "test_cli.py::test_explain_and_evaluate_in_process",
    "test_cli.py::test_path_family_methods_in_explain",
    "test_cli.py::test_python_m_captum_prior_one_line_error",
    "test_cli.py::test_references_option_and_warnings",
    "test_cli.py::test_refused_rerun_names_n_samples_with_both_values",
    "test_cli.py::test_sigkill_then_resume_rewrites_nothing_and_matches",
    "test_deep_prior_units.py::test_default_scale_is_in_data_units",
    "test_deep_prior_units.py::test_layer_none_picks_the_final_block_output_on_a_resnet",
    "test_deep_prior_units.py::test_prior_shifted_baselines_stay_inside_the_clamp_range",
    "test_dmm_men.py::test_parallel_chains_match_sequential_and_seed",
    "test_dmm_men.py::test_plain_conditionals_and_code_prior_also_recover",
    "test_dmm_men.py::test_recovers_sparse_coefficients_better_than_elastic_net",
    "test_dmm_men.py::test_relabelling_removes_label_switching",
    "test_dmm_men.py::test_reproducible_under_seed",
    "test_dmm_men_attribution.py::test_batch_uses_chunked_forward_and_per_example_args",
    "test_dmm_men_attribution.py::test_default_cnn_on_fashion_mnist_sample",
    "test_dmm_men_attribution.py::test_recovers_coefficients_of_the_inputs_regime",
    "test_dmm_men_attribution.py::test_reproducible_under_seed",
    "test_dmm_men_attribution.py::test_tuple_inputs_share_feature_ids_and_baselines",
    "test_dmm_men_insights.py::test_fidelity_tests_separate_top_from_random",
    "test_dmm_men_insights.py::test_insights_recover_key_pixels",
    "test_dmm_men_sampler.py::test_beta_all_components_draws_prior_for_empty",
    "test_dmm_men_sampler.py::test_blocked_sigma2_beta_targets_exact_marginal",
    "test_dmm_men_sampler.py::test_collapsed_allocation_draw_frequencies",
    "test_dmm_men_sampler.py::test_split_merge_leaves_exact_target_invariant",
    "test_dmm_men_segmentation.py::test_dmm_men_attribution_defaults_to_superpixels",
    "test_dmm_men_tempering.py::test_replica_exchange_leaves_product_target_invariant",
    "test_dmm_men_tempering.py::test_run_chain_tempering_cost_and_swaps",
    "test_dmm_men_tempering.py::test_tempered_fit_seeded_saved_and_untempered_unchanged",
    "test_dmm_men_tempering.py::test_tempered_sigma2_beta_block_targets_exact_conditional",
    "test_expected_gradients.py::test_completeness_and_shrinking_delta",
    "test_expected_gradients.py::test_converges_to_gradient_shap",
    "test_expected_gradients.py::test_same_seed_same_result_and_global_rng",
    "test_expected_gradients.py::test_tuple_inputs_targets_and_additional_args",
    "test_expected_gradients.py::test_zero_prior_equals_expected_gradients_exactly",
    "test_frozen_models.py::test_frozen_gives_the_same_attributions_as_trainable",
    "test_frozen_models.py::test_runs_on_frozen_model_and_leaves_it_frozen",
    "test_jgmm_explainer.py::test_counterfactuals_and_semifactuals_respect_their_constraints",
    "test_jgmm_explainer.py::test_dataloader_equals_tensor_input_and_explicit_higher_layer",
    "test_jgmm_explainer.py::test_fit_reads_two_layers_with_hooks_then_removes_them",
    "test_jgmm_pooling_decoder.py::test_counterfactual_decisions_go_through_the_decoder",
    "test_jgmm_pooling_decoder.py::test_linear_decoder_is_faithful_where_upsampling_is_not",
    "test_metrics_insertion_deletion.py::test_curve_endpoints_and_rise_auc_formula",
    "test_metrics_insertion_deletion.py::test_forward_calls_are_as_few_as_the_batch_size_allows",
    "test_metrics_insertion_deletion.py::test_independent_of_batch_composition_and_chunking",
    "test_metrics_insertion_deletion.py::test_matches_per_step_reference_loop",
    "test_metrics_keep_remove.py::test_batch_composition_and_chunking_do_not_matter",
    "test_metrics_road.py::test_seeded_noise_is_reproducible_and_chunking_invariant",
    "test_metrics_sanity.py::test_figure_layout",
    "test_metrics_sanity.py::test_seeded_and_table",
    "test_metrics_sanity.py::test_similarity_falls_for_gradient_methods",
    "test_metrics_sanity.py::test_stochastic_method_same_draws_per_model",
    "test_metrics_sensitivity_n.py::test_seeded_batch_independent_and_call_count",
    "test_no_corruption.py::test_interrupted_save_leaves_the_previous_file_intact",
    "test_no_corruption.py::test_rejected_step_leaves_model_and_optimiser_bitwise_unchanged",
    "test_optimized_baseline.py::test_batched_sigmas_and_chunks_match_separate_runs",
    "test_optimized_baseline.py::test_cross_entropy_objective_raises_predicted_class_probability",
    "test_optimized_baseline.py::test_delta_constraint_and_diagnostics",
    "test_package.py::test_cli_demo_writes_png",
    "test_path_family.py::test_blur_ig_agrees_with_pair_saliency",
    "test_path_family.py::test_blur_ig_completeness_and_chunking",
    "test_path_family.py::test_guided_ig_agrees_with_pair_saliency",
    "test_path_family.py::test_guided_ig_with_no_deviation_is_left_riemann_ig",
    "test_path_family.py::test_idgi_attributions_sum_to_the_output_difference",
    "test_per_example_generators.py::test_eg_list_equals_one_call_per_example",
    "test_priors.py::test_shape_range_determinism_and_model_untouched",
    "test_report.py::test_mprt_metric_sharded_and_resumable",
    "test_report.py::test_report_flags_model_independent_method_and_small_n",
    "test_runner.py::test_batched_generators_match_one_call_per_example",
    "test_runner.py::test_evaluate_compare_and_report",
    "test_runner.py::test_forward_pass_count_matches_the_metrics",
    "test_runner.py::test_global_rng_methods_seeded_per_example",
    "test_runner.py::test_mismatching_manifest_is_refused",
    "test_runner.py::test_results_do_not_depend_on_batch_or_shard_size",
    "test_runner.py::test_resume_skips_finished_and_redoes_corrupt_shards",
    "test_training.py::test_trainer_reduces_the_penalised_objective",
    "test_valid_path_gradients.py::test_noise_tunnel_and_captum_metrics",
    "test_valid_path_gradients.py::test_target_forms",
    "test_vbgmm.py::test_batch_fits_each_element_as_if_alone",
    "test_vbgmm.py::test_lower_bound_and_responsibilities_match_sklearn",
    "test_vbgmm.py::test_numpy_and_torch_engines_agree",
    "test_vbgmm.py::test_prior_posterior_is_sklearns_fit_from_the_same_start",
    "test_vpg_quadrature.py::test_gausslegendre_50_steps_within_2x_of_ig_where_every_feature_is_valid",
})


def pytest_collection_modifyitems(config, items):
    """Mark the slow tier (``@pytest.mark.slow``): ``pytest -m "not slow"`` is
    the edit loop (under a minute on 2 cores); ``pytest tests`` runs all."""
    slow = pytest.mark.slow
    for item in items:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
        name = f"{module}::{item.originalname if hasattr(item, 'originalname') else item.name}"
        if module in SLOW_MODULES or name in SLOW_TESTS:
            item.add_marker(slow)
