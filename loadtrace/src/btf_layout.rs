//! Finds, in the running kernel's BTF, where `task_struct` keeps the fields the kernel-side
//! programs read, so that one build of those programs runs on every kernel.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use btf_rs::{Btf, Type};
use loadtrace_common::TaskLayout;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What loadtrace learns of the running kernel from its BTF.
pub struct Kernel {
    pub layout: TaskLayout,
    /// The optional tracepoints asked for that this kernel has.
    pub tracepoints: Vec<&'static str>,
}

/// Reads the BTF once for the layout and for which of `optional` tracepoints exist.
pub fn inspect(path: &Path, optional: &[&'static str]) -> Result<Kernel> {
    let btf = load(path)?;
    Ok(Kernel {
        layout: layout(&btf)?,
        tracepoints: optional
            .iter()
            .copied()
            .filter(|n| {
                btf.resolve_ids_by_name(&format!("btf_trace_{n}"))
                    .is_ok_and(|ids| !ids.is_empty())
            })
            .collect(),
    })
}

fn load(path: &Path) -> Result<Btf> {
    if !path.exists() {
        bail!(
            "{} is missing: this kernel was built without BTF (CONFIG_DEBUG_INFO_BTF=y), which \
             loadtrace needs to find task_struct fields",
            path.display()
        );
    }
    // Mapped and read on demand where the kernel allows it (6.16+ lets /sys/kernel/btf be
    // mmapped): parsing all of it costs more memory than the rest of loadtrace.
    Btf::from_file_with_backend(path, btf_rs::Backend::Mmap)
        .or_else(|_| Btf::from_file(path))
        .with_context(|| format!("parsing {}", path.display()))
}

fn layout(btf: &Btf) -> Result<TaskLayout> {
    let task = find_struct(btf, "task_struct")?;
    let field = |name: &str| member_bit_offset(btf, &task, name);

    let pid = field("pid")?.ok_or_else(|| anyhow!("task_struct has no `pid`"))?;
    let tgid = field("tgid")?.ok_or_else(|| anyhow!("task_struct has no `tgid`"))?;
    // Renamed from `state` to `__state` in 5.14.
    let state = match field("__state")? {
        Some(off) => off,
        None => field("state")?
            .ok_or_else(|| anyhow!("task_struct has neither `__state` nor `state`"))?,
    };
    let on_rq = field("on_rq")?.ok_or_else(|| anyhow!("task_struct has no `on_rq`"))?;
    let in_iowait = field("in_iowait")?.ok_or_else(|| anyhow!("task_struct has no `in_iowait`"))?;
    // The kernel's run-queue wait per task (CONFIG_SCHED_INFO, present in every distribution
    // kernel: schedstat and delay accounting need it).
    let sched_info = field("sched_info")?
        .ok_or_else(|| anyhow!("task_struct has no `sched_info` (CONFIG_SCHED_INFO=n)"))?;
    let run_delay = member_bit_offset(btf, &find_struct(btf, "sched_info")?, "run_delay")?
        .ok_or_else(|| anyhow!("struct sched_info has no `run_delay`"))?;
    // 6.12+: a sleeper the fair class keeps queued (delayed dequeue). A bitfield would need a
    // mask; the kernel declares it a plain byte.
    let se = field("se")?.ok_or_else(|| anyhow!("task_struct has no `se`"))?;
    let sched_entity = find_struct(btf, "sched_entity")?;
    let sched_delayed =
        member_bit_offset(btf, &sched_entity, "sched_delayed")?.map_or(0, |bits| (se + bits) / 8);
    let sum_exec = member_bit_offset(btf, &sched_entity, "sum_exec_runtime")?
        .ok_or_else(|| anyhow!("struct sched_entity has no `sum_exec_runtime`"))?;
    let rq_fields = run_queue_fields(btf, se, &sched_entity)?;
    let request = find_struct(btf, "request")?;
    let rq_field = |name: &str| -> Result<u32> {
        member_bit_offset(btf, &request, name)?
            .map(|b| b / 8)
            .ok_or_else(|| anyhow!("struct request has no `{name}`"))
    };
    let bdev = find_struct(btf, "block_device")?;
    let bd_dev = member_bit_offset(btf, &bdev, "bd_dev")?
        .ok_or_else(|| anyhow!("struct block_device has no `bd_dev`"))?;

    Ok(TaskLayout {
        pid_offset: pid / 8,
        tgid_offset: tgid / 8,
        state_offset: state / 8,
        in_iowait_offset: in_iowait / 8,
        // Bitfields are allocated from the least significant bit on little-endian machines.
        in_iowait_mask: 1 << (in_iowait % 8),
        prev_state_arg: u32::from(sched_switch_has_prev_state(btf)?),
        run_delay_offset: (sched_info + run_delay) / 8,
        rq_data_len_offset: rq_field("__data_len")?,
        rq_cmd_flags_offset: rq_field("cmd_flags")?,
        rq_part_offset: rq_field("part")?,
        rq_bio_offset: rq_field("bio")?,
        bdev_dev_offset: bd_dev / 8,
        sched_delayed_offset: sched_delayed,
        sum_exec_offset: (se + sum_exec) / 8,
        cfs_rq_offset: rq_fields[0],
        cfs_rq_rq_offset: rq_fields[1],
        rq_calc_load_update_offset: rq_fields[2],
        rq_cpu_offset: rq_fields[3],
        rq_steal_offset: rq_fields[4],
        on_rq_offset: on_rq / 8,
    })
}

/// Byte offsets of `se.cfs_rq` in `task_struct`, `rq` in `cfs_rq` and `calc_load_update` in
/// `rq`: how the kernel side reaches a CPU's load-sample jiffy. All 0 where a link is missing
/// (`cfs_rq` links exist with CONFIG_FAIR_GROUP_SCHED, which every distribution enables).
/// Then `cpu` in `rq`, and `prev_steal_time_rq`, 0 on kernels that do not take steal time out
/// of their tasks' CPU time.
fn run_queue_fields(btf: &Btf, se_bits: u32, sched_entity: &btf_rs::Struct) -> Result<[u32; 5]> {
    let Some(cfs_rq) = member_bit_offset(btf, sched_entity, "cfs_rq")? else {
        return Ok([0; 5]);
    };
    let Some(rq) = member_bit_offset(btf, &find_struct(btf, "cfs_rq")?, "rq")? else {
        return Ok([0; 5]);
    };
    let run_queue = find_struct(btf, "rq")?;
    let Some(calc_load_update) = member_bit_offset(btf, &run_queue, "calc_load_update")? else {
        return Ok([0; 5]);
    };
    let Some(cpu) = member_bit_offset(btf, &run_queue, "cpu")? else {
        return Ok([0; 5]);
    };
    let steal = member_bit_offset(btf, &run_queue, "prev_steal_time_rq")?.unwrap_or(0);
    Ok([
        (se_bits + cfs_rq) / 8,
        rq / 8,
        calc_load_update / 8,
        cpu / 8,
        steal / 8,
    ])
}

fn find_struct(btf: &Btf, name: &str) -> Result<btf_rs::Struct> {
    btf.resolve_types_by_name(name)
        .with_context(|| format!("looking up `struct {name}` in BTF"))?
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or_else(|| anyhow!("BTF has no definition of `struct {name}`"))
}

/// Bit offset of a member, looking through anonymous structs and unions (the kernel wraps
/// fields in them, e.g. for struct randomisation).
fn member_bit_offset(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Result<Option<u32>> {
    for m in &s.members {
        let m_name = btf.resolve_name(m).unwrap_or_default();
        if m_name == name {
            return Ok(Some(m.bit_offset()));
        }
        if m_name.is_empty() {
            let inner = match btf.resolve_chained_type(m)? {
                Type::Struct(inner) | Type::Union(inner) => inner,
                _ => continue,
            };
            if let Some(off) = member_bit_offset(btf, &inner, name)? {
                return Ok(Some(m.bit_offset() + off));
            }
        }
    }
    Ok(None)
}

/// sched_switch gained a fourth argument, `prev_state`, in 5.18. The tracepoint's BTF typedef
/// `btf_trace_sched_switch` is a pointer to `void (void *, bool, prev, next[, prev_state])`.
fn sched_switch_has_prev_state(btf: &Btf) -> Result<bool> {
    let Some(Type::Typedef(td)) = btf
        .resolve_types_by_name("btf_trace_sched_switch")
        .context("looking up btf_trace_sched_switch")?
        .into_iter()
        .next()
    else {
        bail!("BTF has no btf_trace_sched_switch: the sched_switch tracepoint is missing");
    };
    let mut t = btf.resolve_chained_type(&td)?;
    while let Type::Ptr(p) = &t {
        t = btf.resolve_chained_type(p)?;
    }
    match t {
        Type::FuncProto(proto) => Ok(proto.parameters.len() >= 5),
        other => bail!(
            "btf_trace_sched_switch is a {}, not a function",
            other.name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against this machine's kernel: every CI machine has BTF (the project needs it).
    #[test]
    fn resolves_the_running_kernel() {
        let layout = inspect(Path::new(VMLINUX_BTF), &[])
            .expect("BTF layout")
            .layout;
        assert!(layout.pid_offset > 0 && layout.tgid_offset == layout.pid_offset + 4);
        assert!(layout.in_iowait_mask.is_power_of_two() && layout.in_iowait_mask < 256);
        assert_eq!(
            layout.prev_state_arg, 1,
            "kernels since 5.18 pass prev_state"
        );
        assert!(layout.run_delay_offset > 0, "sched_info.run_delay found");
        assert!(layout.sum_exec_offset > 0, "se.sum_exec_runtime found");
        assert!(
            layout.cfs_rq_offset > 0
                && layout.cfs_rq_rq_offset > 0
                && layout.rq_calc_load_update_offset > 0,
            "se.cfs_rq->rq->calc_load_update found"
        );
        assert!(layout.rq_cpu_offset > 0, "rq->cpu found");
        assert!(layout.on_rq_offset > 0, "task_struct.on_rq found");
        let version = crate::preflight::kernel_version(&crate::procfs::kernel_release());
        assert_eq!(
            layout.sched_delayed_offset != 0,
            version >= (6, 12),
            "se.sched_delayed exists exactly on kernels with delayed dequeue (6.12+)"
        );
    }

    #[test]
    fn finds_the_block_tracepoints_of_this_kernel() {
        let names = ["block_rq_issue", "block_rq_complete", "no_such_tracepoint"];
        let found = inspect(Path::new(VMLINUX_BTF), &names).unwrap().tracepoints;
        assert_eq!(found, ["block_rq_issue", "block_rq_complete"]);
    }

    #[test]
    fn missing_btf_is_a_clear_error() {
        let err = inspect(Path::new("/nonexistent/vmlinux"), &[])
            .err()
            .unwrap();
        assert!(err.to_string().contains("without BTF"), "{err}");
    }
}
