# -*- test-case-name: tests.util.test_netinfo -*-
"""The machine's own interface addresses, for the ``mynetworks`` default.

Postfix computes ``mynetworks`` from ``mynetworks_style``: ``host`` trusts
only the machine's own addresses, ``subnet`` the subnets of its interfaces,
``class`` their whole class A/B/C networks.  Loopback is always trusted.
Interface addresses come from ``ip -o addr`` (iproute2); where that is
missing, from resolving the host name.
"""

import functools
import ipaddress
import socket
import subprocess

LOOPBACK = ("127.0.0.0/8", "[::1]/128")


@functools.lru_cache(maxsize=1)
def interfaces():
    """Return the machine's interface addresses as ``ipaddress`` interfaces."""
    found = []
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True,
                             text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        words = line.split()
        for i, word in enumerate(words[:-1]):
            if word in ("inet", "inet6"):
                try:
                    found.append(ipaddress.ip_interface(words[i + 1]))
                except ValueError:
                    pass
    if not found:
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None):
                addr = ipaddress.ip_address(info[4][0].split("%")[0])
                found.append(ipaddress.ip_interface("%s/%d" % (addr, addr.max_prefixlen)))
        except (OSError, ValueError):
            pass
    return tuple(found)


def _format(network):
    if network.version == 6:
        return "[%s]/%d" % (network.network_address, network.prefixlen)
    return str(network)


def mynetworks(style, addresses=None):
    """Return the default ``mynetworks`` list for ``style`` (host, subnet or class).

    Args:
        style: the ``mynetworks_style`` value.
        addresses: interface addresses to use instead of the machine's own.
    """
    result = list(LOOPBACK)
    for iface in interfaces() if addresses is None else addresses:
        if iface.ip.is_loopback or iface.ip.is_link_local:
            continue
        if style == "host":
            net = ipaddress.ip_network(iface.ip)
        elif style == "class" and iface.version == 4:
            first = int(str(iface.ip).split(".")[0])
            prefix = 8 if first < 128 else 16 if first < 192 else 24
            net = ipaddress.ip_network("%s/%d" % (iface.ip, prefix), strict=False)
        else:
            net = iface.network
        text = _format(net)
        if text not in result:
            result.append(text)
    return result
