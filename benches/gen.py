#!/usr/bin/env python3
"""Generates the benchmark inputs into a work directory (nothing big is committed).

    gen.py WORKDIR

Writes domain-8k.xml (a realistic ~8 KB Nova guest, shape of `virsh dumpxml` on libvirt 9),
domain-5m.xml (the same guest with thousands of devices, ~5 MB) and config.json / config.txt
(pinned libvirt version, no host probe: deterministic).
"""
import json
import os
import sys

HEAD = """<domain type='kvm' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>instance-0000abcd</name>
  <uuid>0d4c2f0e-7a11-4c1e-9a51-5b6c3f5e1d2a</uuid>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="27.1.0"/>
      <nova:name>web &amp; cache &lt;prod&gt;</nova:name>
      <nova:creationTime>2026-11-25 10:00:00</nova:creationTime>
      <nova:flavor name="m1.large">
        <nova:memory>8192</nova:memory>
        <nova:disk>80</nova:disk>
        <nova:swap>0</nova:swap>
        <nova:ephemeral>0</nova:ephemeral>
        <nova:vcpus>4</nova:vcpus>
      </nova:flavor>
      <nova:owner>
        <nova:user uuid="85ae3ef1a2b34c5d9e8f7a6b5c4d3e2f">admin</nova:user>
        <nova:project uuid="9f1b2c3d4e5f60718293a4b5c6d7e8f9">demo</nova:project>
      </nova:owner>
      <nova:root type="image" uuid="2b7a8f3e-1c4d-4e5f-9a6b-7c8d9e0f1a2b"/>
      <nova:ports>
        <nova:port uuid="5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b">
          <nova:ip type="fixed" address="10.0.0.12" ipVersion="4"/>
        </nova:port>
      </nova:ports>
    </nova:instance>
  </metadata>
  <memory unit='KiB'>8388608</memory>
  <currentMemory unit='KiB'>8388608</currentMemory>
  <vcpu placement='static'>4</vcpu>
  <cputune>
    <shares>4096</shares>
  </cputune>
  <resource>
    <partition>/machine</partition>
  </resource>
  <sysinfo type='smbios'>
    <system>
      <entry name='manufacturer'>OpenStack Foundation</entry>
      <entry name='product'>OpenStack Nova</entry>
      <entry name='version'>27.1.0</entry>
      <entry name='serial'>0d4c2f0e-7a11-4c1e-9a51-5b6c3f5e1d2a</entry>
      <entry name='uuid'>0d4c2f0e-7a11-4c1e-9a51-5b6c3f5e1d2a</entry>
      <entry name='family'>Virtual Machine</entry>
    </system>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='hd'/>
    <smbios mode='sysinfo'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <vmcoreinfo state='on'/>
  </features>
  <cpu mode='host-model' check='partial'>
    <topology sockets='4' dies='1' cores='1' threads='1'/>
  </cpu>
  <clock offset='utc'>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
"""

TAIL = """    <controller type='usb' index='0' model='piix3-uhci'>
      <alias name='usb'/>
    </controller>
    <input type='tablet' bus='usb'>
      <alias name='input0'/>
    </input>
    <graphics type='vnc' port='5900' autoport='yes' listen='0.0.0.0'>
      <listen type='address' address='0.0.0.0'/>
    </graphics>
    <video>
      <model type='virtio' heads='1' primary='yes'/>
      <alias name='video0'/>
    </video>
    <memballoon model='virtio'>
      <stats period='10'/>
      <alias name='balloon0'/>
    </memballoon>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
      <alias name='rng0'/>
    </rng>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'>
    <label>libvirt-0d4c2f0e-7a11-4c1e-9a51-5b6c3f5e1d2a</label>
    <imagelabel>libvirt-0d4c2f0e-7a11-4c1e-9a51-5b6c3f5e1d2a</imagelabel>
  </seclabel>
  <qemu:commandline>
    <qemu:arg value='-fw_cfg'/>
    <qemu:arg value='name=opt/nova,string=&quot;x&quot;&#10;'/>
  </qemu:commandline>
</domain>
"""


def pci(i, function):
    bus, slot = (i // 32) % 256, i % 32
    return f"      <address type='pci' domain='0x0000' bus='0x{bus:02x}' slot='0x{slot:02x}' function='0x{function}'/>\n"


def disk(i):
    dev = "vd" + chr(ord("a") + i % 26) + (str(i // 26) if i >= 26 else "")
    return f"""    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none' discard='unmap'/>
      <auth username='openstack'>
        <secret type='ceph' uuid='3c5e7a9b-1d2f-4a6b-8c0d-{i:012x}'/>
      </auth>
      <source protocol='rbd' name='volumes/volume-{i:08x}-1c4d-4e5f-9a6b-7c8d9e0f1a2b' index='{i + 1}'>
        <host name='192.168.0.10' port='6789'/>
        <host name='192.168.0.11' port='6789'/>
      </source>
      <target dev='{dev}' bus='virtio'/>
      <serial>{i:08x}-1c4d-4e5f-9a6b-7c8d9e0f1a2b</serial>
      <alias name='virtio-disk{i}'/>
{pci(i, 0)}    </disk>
"""


def nic(i):
    return f"""    <interface type='bridge'>
      <mac address='fa:16:3e:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}'/>
      <source bridge='qbr{i:08x}-5e'/>
      <target dev='tap{i:08x}-5e'/>
      <model type='virtio'/>
      <mtu size='1450'/>
      <alias name='net{i}'/>
{pci(i, 1)}    </interface>
"""


def serial(i):
    return f"""    <serial type='pty'>
      <source path='/dev/pts/{i}'/>
      <log file='/var/lib/nova/instances/0d4c2f0e/console{i}.log' append='off'/>
      <target type='isa-serial' port='{i}'>
        <model name='isa-serial'/>
      </target>
      <alias name='serial{i}'/>
    </serial>
"""


def domain(target_bytes):
    parts = [HEAD]
    size = len(HEAD) + len(TAIL)
    i = 0
    while True:
        block = disk(i) + nic(i) + (serial(i) if i < 4 else "")
        if size + len(block) > target_bytes and i >= 2:
            break
        parts.append(block)
        size += len(block)
        i += 1
    # Pad to the exact size with a comment, the way an operator's notes would sit in the XML.
    pad = target_bytes - size - len("    <!--  -->\n")
    if pad > 0:
        parts.append("    <!-- " + ("padding " * (pad // 8 + 1))[:pad] + " -->\n")
    parts.append(TAIL)
    return "".join(parts)


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else "benches/work"
    os.makedirs(work, exist_ok=True)
    files = {
        "domain-8k.xml": domain(8 * 1024),
        "domain-5m.xml": domain(5 * 1024 * 1024),
        # Hostile shapes: quadratic work on these would block libvirt's restore for seconds.
        "hostile-attrs.xml": "<domain type='kvm'><name>x</name><devices"
        + "".join(f" a{i}=''" for i in range(80_000))
        + "/></domain>\n",
        "hostile-events.xml": "<domain type='kvm'><name>x</name><perf>"
        + "".join(f"<event name='e{i}' enabled='yes'/>" for i in range(80_000))
        + "</perf><devices/></domain>\n",
        "config.json": json.dumps(
            {
                "enabled_perf_events": ["cpu_cycles", "instructions", "cache_misses", "page_faults", "cpu_clock"],
                "libvirt_version": "9.0.0",
                "host_probe": False,
            },
            indent=2,
        )
        + "\n",
    }
    # The same config without a pin, for the warm-cache variant (the cache supplies the version).
    files["config-cache.json"] = json.dumps(
        {
            "enabled_perf_events": ["cpu_cycles", "instructions", "cache_misses", "page_faults", "cpu_clock"],
            "host_probe": False,
        },
        indent=2,
    ) + "\n"
    for name, text in files.items():
        path = os.path.join(work, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(path, 0o644)
    for name in sorted(files):
        print(f"gen: {name} {os.path.getsize(os.path.join(work, name))} bytes")


if __name__ == "__main__":
    main()
