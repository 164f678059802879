"""The shared service kit of modelfleet: what every service needs besides its own handlers."""
