//! Berth end to end through the real binaries: berthctl → berth-scheduler → berth-agent →
//! containerd and runc, and every state change back. This file holds the trial list and what
//! the trials share (`Env`, a task's description, its logs); the trials live in `e2e/`, one
//! file an area.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use berth_tests::berth::{Agent, AgentOptions, CtlOutput, Scheduler, berthctl};
use berth_tests::netlab::AgentNetns;
use berth_tests::{World, fixtures, poll, run_suite};
use serde_json::Value;

#[path = "e2e/aws_secrets.rs"]
mod aws_secrets;
#[path = "e2e/awslogs.rs"]
mod awslogs;
#[path = "e2e/clusters.rs"]
mod clusters;
#[path = "e2e/confinement.rs"]
mod confinement;
#[path = "e2e/confinement_net.rs"]
mod confinement_net;
#[path = "e2e/container_fields.rs"]
mod container_fields;
#[path = "e2e/deployments.rs"]
mod deployments;
#[path = "e2e/drain.rs"]
mod drain;
#[path = "e2e/durability.rs"]
mod durability;
#[path = "e2e/faults.rs"]
mod faults;
#[path = "e2e/fidelity.rs"]
mod fidelity;
#[path = "e2e/first_boot.rs"]
mod first_boot;
#[path = "e2e/health.rs"]
mod health;
#[path = "e2e/host_path_race.rs"]
mod host_path_race;
#[path = "e2e/image_gc.rs"]
mod image_gc;
#[path = "e2e/images.rs"]
mod images;
#[path = "e2e/lifecycle.rs"]
mod lifecycle;
#[path = "e2e/logs.rs"]
mod logs;
#[path = "e2e/network.rs"]
mod network;
#[path = "e2e/orphans.rs"]
mod orphans;
#[path = "e2e/placement.rs"]
mod placement;
#[path = "e2e/pull.rs"]
mod pull;
#[path = "e2e/pull_behaviour.rs"]
mod pull_behaviour;
#[path = "e2e/registry.rs"]
mod registry;
#[path = "e2e/secrets.rs"]
mod secrets;
#[path = "e2e/security.rs"]
mod security;
#[path = "e2e/service_events.rs"]
mod service_events;
#[path = "e2e/services.rs"]
mod services;
#[path = "e2e/store_damage.rs"]
mod store_damage;
#[path = "e2e/systemd.rs"]
mod systemd;
#[path = "e2e/systemd_scheduler.rs"]
mod systemd_scheduler;
#[path = "e2e/taskdefs.rs"]
mod taskdefs;
#[path = "e2e/tasks.rs"]
mod tasks;
#[path = "e2e/telemetry.rs"]
mod telemetry;
#[path = "e2e/telemetry_stream.rs"]
mod telemetry_stream;
#[path = "e2e/trust.rs"]
mod trust;
#[path = "e2e/trust_certs.rs"]
mod trust_certs;
#[path = "e2e/trust_deregister.rs"]
mod trust_deregister;
#[path = "e2e/trust_wire.rs"]
mod trust_wire;
#[path = "e2e/volumes.rs"]
mod volumes;
#[path = "e2e/wait.rs"]
mod wait;

fn main() -> ExitCode {
    run_suite("e2e", |w| {
        vec![
            w.trial(
                "clusters_lifecycle_and_delete_refused_in_use",
                clusters::clusters,
            ),
            w.trial(
                "agent_for_unknown_cluster_is_refused",
                clusters::unknown_cluster,
            ),
            w.trial(
                "register_lists_resources_and_restart_keeps_id",
                clusters::register,
            ),
            w.trial(
                "telemetry_introspection_endpoint_reports_real_containers",
                telemetry::introspection_endpoint,
            ),
            w.trial(
                "telemetry_figures_agree_in_the_window_metrics_and_task_stats",
                telemetry_stream::figures_agree_in_every_place,
            ),
            w.trial(
                "services_keep_desired_count_across_a_crash_and_a_draining_instance",
                services::keeps_desired_count_across_a_crash_and_a_draining_instance,
            ),
            w.trial(
                "services_replace_an_unhealthy_task",
                services::replaces_an_unhealthy_task,
            ),
            w.trial(
                "services_replace_the_tasks_of_an_agent_killed_for_good",
                services::replaces_the_tasks_of_an_agent_killed_for_good,
            ),
            w.trial(
                "services_daemon_reaches_an_instance_that_joins_later",
                services::daemon_reaches_an_instance_that_joins_later,
            ),
            w.trial(
                "services_scheduler_sigkilled_while_converging_starts_nothing_twice",
                services::scheduler_sigkilled_while_converging_starts_nothing_twice,
            ),
            w.trial(
                "services_events_follow_streams_a_new_event",
                service_events::follow_streams_a_new_event,
            ),
            w.trial(
                "placement_strategies_and_constraints_hold_and_refusals_count_exclusions",
                placement::strategies_and_constraints_hold_and_refusals_count_exclusions,
            ),
            w.trial(
                "deployments_rolling_stays_within_the_percents",
                deployments::rolling_deployment_stays_within_the_percents,
            ),
            w.trial(
                "deployments_failing_revision_trips_the_breaker_and_rolls_back",
                deployments::a_failing_revision_trips_the_breaker_and_rolls_back,
            ),
            w.trial(
                "deployments_scheduler_sigkilled_mid_deployment_completes_it",
                deployments::scheduler_sigkilled_mid_deployment_completes_it,
            ),
            w.trial(
                "drain_draining_instance_takes_no_new_task",
                drain::draining_instance_takes_no_new_task,
            ),
            w.trial(
                "drain_on_shutdown_drains_the_instance_on_sigterm",
                drain::drain_on_shutdown_drains_on_sigterm,
            ),
            w.trial(
                "systemd_units_pass_systemd_analyze_verify",
                systemd::units_pass_systemd_analyze_verify,
            ),
            w.trial(
                "first_boot_from_user_data_and_tags_joins_and_forgets_the_token",
                first_boot::first_boot_from_user_data_and_tags_joins_and_forgets_the_token,
            ),
            w.trial(
                "systemd_agent_speaks_sd_notify_ready_status_watchdog",
                systemd::agent_speaks_sd_notify,
            ),
            w.trial(
                "systemd_scheduler_speaks_sd_notify_ready_status_watchdog",
                systemd_scheduler::scheduler_speaks_sd_notify,
            ),
            w.trial(
                "trust_clients_need_tls_and_a_credential_with_the_role",
                trust::clients_need_tls_and_a_credential_with_the_role,
            ),
            w.trial(
                "trust_used_up_tokens_and_wrong_pins_keep_agents_out",
                trust::used_up_tokens_and_wrong_pins_keep_agents_out,
            ),
            w.trial(
                "trust_client_certificates_carry_a_role_and_forged_ones_are_refused",
                trust_certs::client_certificates_carry_a_role_and_forged_ones_are_refused,
            ),
            w.trial(
                "trust_deregistering_a_connected_instance_cuts_its_agent_off",
                trust_deregister::deregistering_a_connected_instance_cuts_its_agent_off,
            ),
            w.trial(
                "trust_forged_expired_and_foreign_agent_certificates_are_refused_and_logged",
                trust_wire::forged_expired_and_foreign_agent_certificates_are_refused_and_logged,
            ),
            w.trial(
                "trust_forged_claims_over_mtls_are_refused_and_logged",
                trust_wire::forged_claims_over_mtls_are_refused_and_logged,
            ),
            w.trial(
                "image_gc_the_right_images_go_and_the_rest_stay",
                image_gc::the_right_images_go_and_the_rest_stay,
            ),
            w.trial(
                "images_list_and_collect_from_berthctl",
                images::list_and_collect_from_berthctl,
            ),
            w.trial(
                "images_an_image_assigned_during_a_collection_is_kept",
                images::an_image_assigned_during_a_collection_is_kept,
            ),
            w.trial(
                "progress_shows_while_pending_and_run_task_wait_prints_it",
                progress::progress_shows_while_pending_and_run_task_wait_prints_it,
            ),
            w.trial(
                "pull_behaviour_default_falls_back_to_the_cache_and_says_so",
                pull_behaviour::default_falls_back_to_the_cache_and_says_so,
            ),
            w.trial(
                "pull_behaviour_always_fails_when_the_registry_does",
                pull_behaviour::always_fails_when_the_registry_does,
            ),
            w.trial(
                "pull_behaviour_once_pulls_only_what_it_never_pulled",
                pull_behaviour::once_pulls_only_what_it_never_pulled,
            ),
            w.trial(
                "pull_behaviour_prefer_cached_uses_the_cache",
                pull_behaviour::prefer_cached_uses_the_cache,
            ),
            w.trial(
                "pull_behaviour_digest_pinned_image_starts_with_the_registry_down",
                pull_behaviour::digest_pinned_image_starts_with_the_registry_down,
            ),
            w.trial(
                "run_task_reaches_running_with_cgroup_limits",
                tasks::run_task_running,
            ),
            w.trial("essential_exit_3_stops_the_task", tasks::essential_exit),
            w.trial(
                "wait_run_task_wait_and_wait_follow_the_task",
                wait::run_task_wait_and_wait_follow_the_task,
            ),
            w.trial(
                "stop_task_kills_sigterm_ignorer_after_stop_timeout",
                tasks::stop_task,
            ),
            w.trial("bad_requests_give_clear_errors", clusters::bad_requests),
            w.trial(
                "missing_image_stops_task_with_registry_reason",
                tasks::missing_image,
            ),
            w.trial(
                "scheduler_sigkill_restart_loses_nothing",
                lifecycle::scheduler_restart,
            ),
            w.trial("cleanup_wait_zero_leaves_nothing", lifecycle::cleanup),
            w.trial(
                "agent_restart_keeps_containers_running",
                lifecycle::agent_restart,
            ),
            w.trial("slow_tasks_never_delay_another_task", lifecycle::isolation),
            w.trial(
                "durability_exits_while_the_agent_is_down_keep_their_code_or_say_it_is_lost",
                durability::exits_while_the_agent_is_down,
            ),
            w.trial(
                "durability_redeploy_a_fixed_host_port_right_after_a_stop",
                durability::redeploy_fixed_host_port_after_stop,
            ),
            w.trial(
                "durability_orphans_of_a_lost_store_are_swept_after_the_grace",
                orphans::lost_store_orphans_are_swept_after_the_grace,
            ),
            w.trial(
                "durability_a_truncated_store_is_moved_aside_and_the_cluster_converges",
                store_damage::a_truncated_store_is_moved_aside_and_the_cluster_converges,
            ),
            w.trial(
                "durability_a_garbled_store_record_is_reported_and_skipped",
                store_damage::a_garbled_record_is_reported_and_skipped,
            ),
            w.trial(
                "depends_on_success_orders_start_and_failure_names_both",
                tasks::depends_on,
            ),
            w.trial(
                "restart_policy_restarts_in_place_until_an_ignored_exit",
                tasks::restart_policy,
            ),
            w.trial(
                "volumes_a_task_volume_is_shared_by_its_containers",
                volumes::volume_shared,
            ),
            w.trial(
                "volumes_a_read_only_bind_mount_refuses_writes",
                volumes::volume_read_only_bind,
            ),
            w.trial(
                "volumes_a_symlink_swapped_in_during_the_pull_never_mounts_the_hosts_root",
                host_path_race::a_symlink_swapped_in_during_the_pull_never_mounts_the_hosts_root,
            ),
            w.trial(
                "volumes_a_host_path_outside_the_allowed_dirs_is_refused",
                volumes::volume_host_path_refused,
            ),
            w.trial(
                "volumes_the_task_directory_is_gone_after_cleanup",
                volumes::volume_cleanup,
            ),
            w.trial(
                "volumes_a_tmpfs_docker_volume_is_shared",
                volumes::volume_tmpfs,
            ),
            w.trial(
                "health_check_gates_a_healthy_dependency_and_shows_in_describe",
                health::health_gating,
            ),
            w.trial(
                "unhealthy_essential_container_stops_its_task_with_a_reason",
                health::health_unhealthy,
            ),
            w.trial(
                "logs_rotate_lose_nothing_and_follow_across_rotations",
                logs::logs_rotate_and_follow,
            ),
            w.trial(
                "logs_unsupported_log_driver_is_refused_by_name",
                logs::logs_unsupported_driver,
            ),
            w.trial(
                "awslogs_events_arrive_in_their_group_and_stream_in_order",
                awslogs::awslogs_events_arrive,
            ),
            w.trial(
                "awslogs_non_blocking_drops_and_counts_and_never_stalls",
                awslogs::awslogs_non_blocking_drops,
            ),
            w.trial(
                "awslogs_blocking_back_pressures_until_the_endpoint_returns",
                awslogs::awslogs_blocking_back_pressures,
            ),
            w.trial(
                "container_fields_take_effect_inside_the_container",
                container_fields::container_fields,
            ),
            w.trial(
                "unsupported_container_fields_are_refused_by_name",
                container_fields::unsupported_fields,
            ),
            w.trial(
                "taskdef_corpus_registers_unchanged_and_runs",
                taskdefs::corpus_registers_and_runs,
            ),
            w.trial(
                "privileged_is_refused_by_default_and_runs_when_allowed",
                security::privileged,
            ),
            w.trial(
                "pidipc_host_is_refused_without_the_key_and_shares_the_hosts_when_allowed",
                pidipc::host_needs_the_key,
            ),
            w.trial(
                "pidipc_ipc_none_has_no_dev_shm_and_describe_shows_the_modes",
                pidipc::ipc_none_and_task_refused,
            ),
            w.trial(
                "pidipc_task_mode_shares_pid_ipc_and_shm_and_survives_an_agent_restart",
                pidipc_task::task_mode_shares_and_survives_an_agent_restart,
            ),
            w.trial(
                "pidipc_killed_holder_stops_the_task_by_name_after_a_restart_in_place",
                pidipc_task::killed_holder_stops_the_task_by_name,
            ),
            w.trial(
                "network_awsvpc_task_address_localhost_dns_files_and_endpoint",
                network::awsvpc,
            ),
            w.trial(
                "network_awsvpc_eni_moves_into_the_task_and_back",
                network::awsvpc_eni,
            ),
            w.trial(
                "network_bridge_port_mappings_hairpin_udp_links_and_clash",
                network::bridge,
            ),
            w.trial("network_200_task_lives_leave_nothing", network::leaks),
            w.trial(
                "network_overlapping_cidr_stops_the_agent_with_a_reason",
                network::overlapping_cidr,
            ),
            w.trial(
                "network_agent_sigkill_keeps_an_awsvpc_task_reachable",
                network::agent_restart_keeps_the_network,
            ),
            w.trial(
                "confinement_default_seccomp_refuses_what_dockers_refuses",
                confinement::default_seccomp,
            ),
            w.trial(
                "confinement_capabilities_beyond_the_defaults_need_the_key_before_any_pull",
                confinement::capabilities,
            ),
            w.trial(
                "confinement_environment_files_only_regular_files_below_the_allowed_paths",
                confinement::environment_files,
            ),
            w.trial(
                "confinement_hostile_images_fail_their_task_and_leave_the_agent_up",
                confinement::hostile_images,
            ),
            w.trial(
                "confinement_volumes_nosuid_nodev_file_modes_and_tmpfs_suid_refused",
                confinement::volume_options,
            ),
            w.trial(
                "security_options_no_new_privileges_and_seccomp_inside_the_container",
                security::security_options,
            ),
            w.trial(
                "security_options_a_bad_seccomp_profile_stops_the_task_naming_the_file",
                security::bad_seccomp_profile,
            ),
            w.trial(
                "devices_an_allowed_device_is_mapped_and_another_stops_the_task",
                security::devices,
            ),
            w.trial(
                "swap_max_swap_and_swappiness_reach_the_container_or_are_noted",
                container_fields::swap,
            ),
            w.trial(
                "terminal_and_interactive_stdin_inside_the_container",
                container_fields::terminal_and_stdin,
            ),
            w.trial(
                "fidelity_stop_signals_the_main_process_then_kills_all",
                fidelity::stop_signals_the_main_process_then_kills_all,
            ),
            w.trial(
                "fidelity_a_non_essential_container_that_cannot_start",
                fidelity::a_non_essential_container_that_cannot_start,
            ),
            w.trial(
                "fidelity_without_task_level_limits_nothing_caps_the_task",
                fidelity::without_task_level_limits_nothing_caps_the_task,
            ),
            w.trial(
                "fidelity_metadata_answers_every_first_instruction",
                fidelity::metadata_from_the_first_instruction,
            ),
            w.trial(
                "pull_image_pulled_into_another_namespace_runs",
                pull::image_pulled_into_another_namespace,
            ),
            w.trial(
                "pull_partial_content_of_other_clients_runs",
                pull::partial_content_of_other_clients,
            ),
            w.trial(
                "confinement_net_a_task_reaches_only_what_the_host_allows",
                confinement_net::reach,
            ),
            w.trial(
                "confinement_net_eni_requests_for_what_the_host_uses_are_refused",
                confinement_net::eni_refusals,
            ),
            w.trial(
                "telemetry_network_bytes_agree_in_every_place",
                telemetry_net::network_bytes_agree_in_every_place,
            ),
            w.trial(
                "telemetry_a_held_metrics_stream_blocks_nothing",
                telemetry_hold::held_metrics_stream_blocks_nothing,
            ),
            w.trial(
                "faults_burst_with_the_agent_killed_20_times",
                faults::burst_with_agent_kills,
            ),
            w.trial(
                "faults_burst_with_the_scheduler_killed_20_times",
                faults::burst_with_scheduler_kills,
            ),
            w.trial(
                "registry_credentials_from_a_docker_credential_helper",
                registry::credentials_from_a_docker_credential_helper,
            ),
            w.trial(
                "registry_htpasswd_credentials_from_a_helper_and_a_task_secret",
                registry_htpasswd::credentials_from_a_helper_and_a_task_secret,
            ),
            w.trial(
                "secrets_reach_the_environment_and_nowhere_else",
                secrets::reach_the_environment_and_nowhere_else,
            ),
            w.trial(
                "secrets_missing_fails_the_task_naming_it",
                secrets::a_missing_secret_fails_the_task_naming_it,
            ),
            w.trial(
                "secrets_from_aws_reach_the_environment_and_nowhere_else",
                aws_secrets::aws_secrets_reach_the_environment_and_nowhere_else,
            ),
            w.trial(
                "aws_secrets_survive_an_agent_restart_and_a_restart_in_place",
                aws_secrets::aws_secrets_survive_an_agent_restart_and_a_restart_in_place,
            ),
            w.trial(
                "registry_slower_than_the_pull_timeout_stops_the_task_naming_it",
                registry::a_registry_slower_than_the_pull_timeout_stops_the_task_naming_it,
            ),
            w.trial(
                "diskfull_data_dir_degrades_refuses_new_tasks_and_recovers",
                diskfull::full_data_dir_degrades_refuses_new_tasks_and_recovers,
            ),
            w.trial(
                "diskfull_an_agent_starting_on_a_full_disk_degrades_and_recovers",
                diskfull_start::an_agent_starting_on_a_full_disk_degrades_and_recovers,
            ),
            w.trial(
                "faults_burst_with_containerd_restarted_20_times",
                faults::burst_with_containerd_restarts,
            ),
        ]
    })
}

/// How long a task may take from run-task to RUNNING (a pull from the local registry, the
/// network and the containers' start).
const RUNNING_WITHIN: Duration = Duration::from_secs(60);

/// One scheduler, one agent and one cluster, private to a trial; the agent's network lives in
/// a namespace of the trial's own.
struct Env {
    dir: PathBuf,
    scheduler: Scheduler,
    agent: Option<Agent>,
    opts: AgentOptions,
    cluster: String,
    /// Dropped after the agent (fields drop in order), so the agent never loses its namespace.
    net: AgentNetns,
}

impl Env {
    /// A scheduler and a cluster; no agent yet.
    fn new(w: &World, cleanup_wait: &str) -> Result<Env> {
        let dir = w.scratch_dir("e2e")?;
        let scheduler = Scheduler::start(&dir, None)?;
        let cluster = w.unique("c");
        let net = AgentNetns::create(&dir.join("net"))?;
        let opts = AgentOptions {
            cluster: cluster.clone(),
            endpoint: scheduler.endpoint.clone(),
            data_dir: dir.join("agent-data"),
            containerd_socket: w.containerd().socket().to_path_buf(),
            namespace: w.unique("ns"),
            insecure_registries: vec![w.registry().host()],
            cleanup_wait: cleanup_wait.to_owned(),
            host_netns: net.host.path().to_owned(),
            netns_dir: net.netns_dir.clone(),
            extra_args: Vec::new(),
            join: None,
        };
        Ok(Env {
            dir,
            scheduler,
            agent: None,
            opts,
            cluster,
            net,
        })
    }

    /// A scheduler, a created cluster and a registered, connected agent.
    fn with_agent(w: &World, cleanup_wait: &str) -> Result<Env> {
        let mut env = Env::new(w, cleanup_wait)?;
        env.connect()?;
        Ok(env)
    }

    /// Creates the cluster, starts the agent (with `opts` as the trial set them) and waits
    /// until it is connected.
    fn connect(&mut self) -> Result<()> {
        self.ok(&["create-cluster", &self.cluster.clone()])?;
        self.start_agent()?;
        self.wait_instance_connected()?;
        Ok(())
    }

    /// Starts an agent; against a TLS scheduler it joins with a join token made for the
    /// cluster on first use.
    fn start_agent(&mut self) -> Result<()> {
        self.start_agent_with_env(&[])
    }

    /// [`Env::start_agent`] with `vars` added to the agent's environment.
    fn start_agent_with_env(&mut self, vars: &[(&str, &str)]) -> Result<()> {
        if self.scheduler.tls && self.opts.join.is_none() {
            self.opts.join = Some(self.scheduler.join_token(&self.cluster)?);
        }
        let n = std::fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        self.agent = Some(Agent::start_with_env(
            &self.opts,
            self.dir.join(format!("agent-{n}.log")),
            vars,
        )?);
        Ok(())
    }

    fn agent(&self) -> Result<&Agent> {
        self.agent.as_ref().context("no agent started")
    }

    fn ctl(&self, args: &[&str]) -> Result<CtlOutput> {
        berthctl(&self.scheduler.ctl_config, &self.cluster, args)
    }

    /// Runs berthctl and requires success.
    fn ok(&self, args: &[&str]) -> Result<CtlOutput> {
        self.succeeded(args, self.ctl(args)?)
    }

    /// `out`, the output of berthctl `args`, if it succeeded; its error and the logs if not.
    fn succeeded(&self, args: &[&str], out: CtlOutput) -> Result<CtlOutput> {
        if out.status != 0 {
            bail!(
                "berthctl {args:?} failed ({}): {}{}",
                out.status,
                out.stderr,
                self.logs()
            );
        }
        Ok(out)
    }

    /// Runs berthctl -o json and requires success.
    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        self.ok(&full)?.json()
    }

    fn logs(&self) -> String {
        let agent = self
            .agent
            .as_ref()
            .map(|a| a.daemon.log())
            .unwrap_or_default();
        let tail = |s: &str| {
            s.lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!(
            "\n--- scheduler log tail ---\n{}\n--- agent log tail ---\n{}",
            tail(&self.scheduler.daemon.log()),
            tail(&agent)
        )
    }

    fn instances(&self) -> Result<Vec<Value>> {
        Ok(
            self.json(&["list-container-instances"])?["containerInstances"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        )
    }

    fn wait_instance_connected(&self) -> Result<Value> {
        poll(Duration::from_secs(20), || {
            Ok(self
                .instances()?
                .into_iter()
                .find(|i| i["agentConnected"] == true))
        })
        .with_context(|| format!("the agent never connected{}", self.logs()))
    }

    /// Writes `def` to a file of the trial's and registers it.
    fn register(&self, def: &Value) -> Result<()> {
        let out = self.try_register(def)?;
        self.succeeded(&["register-task-definition"], out)?;
        Ok(())
    }

    /// Writes `def` to a file of the trial's and runs `register-task-definition` with it,
    /// whatever the outcome (the caller checks it).
    fn try_register(&self, def: &Value) -> Result<CtlOutput> {
        let path = self.dir.join(format!(
            "taskdef-{}.json",
            def["family"].as_str().unwrap_or("x")
        ));
        std::fs::write(&path, serde_json::to_vec_pretty(def)?)?;
        self.ctl(&[
            "register-task-definition",
            "--file",
            &path.to_string_lossy(),
        ])
    }

    /// `berthctl run-task` with `args` after it; the IDs it printed, at least one.
    fn run_tasks(&self, args: &[&str]) -> Result<Vec<String>> {
        let mut full = vec!["run-task"];
        full.extend_from_slice(args);
        let ids = self.ok(&full)?.task_ids();
        ensure!(!ids.is_empty(), "run-task printed no task id");
        Ok(ids)
    }

    /// Runs one task of `family`; its ID.
    fn run_task(&self, family: &str) -> Result<String> {
        let mut ids = self.run_tasks(&["--task-definition", family])?;
        Ok(ids.swap_remove(0))
    }

    /// Registers `def`, runs one task of it and waits up to `within` for `status`; the task's
    /// ID and its description then.
    fn run_until(&self, def: &Value, status: &str, within: Duration) -> Result<(String, Value)> {
        self.register(def)?;
        let family = def["family"]
            .as_str()
            .context("a task definition without a family")?;
        let id = self.run_task(family)?;
        let task = self.wait_status(&id, status, within)?;
        Ok((id, task))
    }

    /// Registers `def` and runs one task of it that must fail to start: it stops within a
    /// minute with stopCode TaskFailedToStart; its description then.
    fn run_failing(&self, def: &Value) -> Result<Value> {
        let (_, t) = self.run_until(def, "STOPPED", Duration::from_secs(60))?;
        ensure!(t["stopCode"] == "TaskFailedToStart", "{t}");
        Ok(t)
    }

    /// The preamble of most trials: registers `def`, runs one task of it and waits for
    /// RUNNING; the task's ID and its description then.
    fn start_task(&self, def: &Value) -> Result<(String, Value)> {
        self.run_until(def, "RUNNING", RUNNING_WITHIN)
    }

    /// Stops the task and waits up to `within` for STOPPED; its description then.
    fn stop_task(&self, id: &str, within: Duration) -> Result<Value> {
        self.ok(&["stop-task", id])?;
        self.wait_status(id, "STOPPED", within)
    }

    fn task(&self, id: &str) -> Result<Value> {
        let v = self.json(&["describe-tasks", id])?;
        v["tasks"]
            .get(0)
            .cloned()
            .with_context(|| format!("task {id} not described: {v}"))
    }

    /// Waits until the host released what the STOPPED task held (after its cleanup wait): the
    /// task shows `resourcesReleasedAt` and is still STOPPED, the last status.
    fn wait_released(&self, id: &str, within: Duration) -> Result<Value> {
        poll(within, || {
            let t = self.task(id)?;
            Ok(t["resourcesReleasedAt"].is_string().then_some(t))
        })
        .and_then(|t| {
            ensure!(
                t["lastStatus"] == "STOPPED",
                "released but not STOPPED: {t}"
            );
            Ok(t)
        })
        .with_context(|| {
            format!(
                "task {id} was never released: {}{}",
                self.task(id).map(|t| t.to_string()).unwrap_or_default(),
                self.logs()
            )
        })
    }

    /// Waits until the task's lastStatus is `status`.
    fn wait_status(&self, id: &str, status: &str, within: Duration) -> Result<Value> {
        poll(within, || {
            let t = self.task(id)?;
            Ok((t["lastStatus"] == status).then_some(t))
        })
        .with_context(|| {
            format!(
                "task {id} never reached {status}: {}{}",
                self.task(id).map(|t| t.to_string()).unwrap_or_default(),
                self.logs()
            )
        })
    }

    /// Waits until the task's container at `index` has an exit code; the task's description
    /// then.
    fn wait_exited(&self, id: &str, index: usize, within: Duration) -> Result<Value> {
        poll(within, || {
            let t = self.task(id)?;
            Ok((!t["containers"][index]["exitCode"].is_null()).then_some(t))
        })
    }

    /// Where the agent writes a container's json-file log.
    fn log_path(&self, task: &str, container: &str) -> PathBuf {
        self.opts
            .data_dir
            .join("logs")
            .join(task)
            .join(format!("{container}.log"))
    }

    /// A container's whole json-file log, as text (the `log` members joined).
    fn container_log(&self, task: &str, container: &str) -> String {
        std::fs::read_to_string(self.log_path(task, container))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| v["log"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The first line of a container's json-file log and its time, once it is there.
    fn first_log_line(&self, task: &str, container: &str) -> Result<(String, String)> {
        let path = self.log_path(task, container);
        poll(Duration::from_secs(30), || {
            let Ok(text) = std::fs::read_to_string(&path) else {
                return Ok(None);
            };
            let Some(line) = text.lines().next() else {
                return Ok(None);
            };
            let v: Value = serde_json::from_str(line)?;
            Ok(Some((
                v["log"].as_str().unwrap_or_default().to_owned(),
                v["time"].as_str().unwrap_or_default().to_owned(),
            )))
        })
        .with_context(|| format!("no log line in {}", path.display()))
    }

    /// Registers `def`, runs one task of it, waits for it to stop and requires every named
    /// container to have exited 0 (a container of checks: see [`checks_script`]), showing its
    /// log otherwise; the task's ID and its description.
    fn run_checks(&self, def: &Value, names: &[&str]) -> Result<(String, Value)> {
        let (id, t) = self.run_until(def, "STOPPED", Duration::from_secs(90))?;
        for name in names {
            let c = container(&t, name)?;
            ensure!(
                c["exitCode"] == 0,
                "container {name}'s checks: {t}\n{}",
                self.container_log(&id, name)
            );
        }
        Ok((id, t))
    }
}

/// The hello fixture pushed to the suite's registry as `repo:v1`; its reference.
fn hello(w: &World, repo: &str) -> Result<String> {
    Ok(
        w.block_on(fixtures::hello(&w.registry().host(), repo, "v1"))?
            .reference,
    )
}

/// A task definition of `containers` in network mode none.
fn taskdef(family: &str, containers: Value) -> Value {
    serde_json::json!({ "family": family, "networkMode": "none", "containerDefinitions": containers })
}

/// A described task's container by name.
fn container<'a>(t: &'a Value, name: &str) -> Result<&'a Value> {
    t["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .with_context(|| format!("no container {name} in {t}"))
}

/// Shell checks that each print their index on stdout when they fail, then exit with their
/// number (from 10), so a container's exit code names the first check that failed.
fn checks_script<S: AsRef<str>>(checks: &[S]) -> String {
    checks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{} || {{ echo 'failed: {i}'; exit {}; }}",
                c.as_ref(),
                i + 10
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A cgroup v1 file of a task (`/berth/<task>[/<container>]`), trimmed.
fn cgroup_file(controller: &str, rel: &str, file: &str) -> Result<String> {
    let path = format!("/sys/fs/cgroup/{controller}/berth/{rel}/{file}");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| path.clone())?
        .trim()
        .to_owned())
}

#[path = "e2e/diskfull.rs"]
mod diskfull;
#[path = "e2e/diskfull_start.rs"]
mod diskfull_start;
#[path = "e2e/pidipc.rs"]
mod pidipc;
#[path = "e2e/pidipc_task.rs"]
mod pidipc_task;
#[path = "e2e/progress.rs"]
mod progress;
#[path = "e2e/registry_htpasswd.rs"]
mod registry_htpasswd;
#[path = "e2e/telemetry_hold.rs"]
mod telemetry_hold;
#[path = "e2e/telemetry_net.rs"]
mod telemetry_net;
